"""`python -m dllab doctor|train|bench`: the command line every environment shares."""

from __future__ import annotations

import json
import sys

from dllab import errors, variants
from dllab.errors import Parser, UserError
from dllab.frameworks import TARGETS, Target


def build_parser() -> Parser:
    parser = Parser(prog="dllab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    doctor = sub.add_parser("doctor", help="what each framework sees, and how to fix it")
    doctor.add_argument(
        "--expect",
        help="accelerator every framework must see: cpu, cuda or mps "
        "(default: the one this environment promises, $DLLAB_ACCELERATOR)",
    )
    doctor.add_argument("--train", action="store_true", help="also run a real training step each")
    doctor.add_argument("--json", action="store_true", help="print JSON instead of a table")
    train = sub.add_parser("train", help="a real training step in one framework")
    train.add_argument(
        "target", choices=[t.name for t in TARGETS], help="the framework, or keras-BACKEND"
    )
    train.add_argument(
        "--expect",
        default=None,
        help="accelerator to train on (default: the promised one, else cpu)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # its own parser: python -m dllab bench --help
        from dllab import bench

        return bench.main(argv[1:])
    try:
        args = build_parser().parse_args(argv)
        expect = variants.check_accelerator(args.expect) if args.expect else None
        if args.command == "doctor":
            from dllab import doctor

            report = doctor.diagnose(expect, train=args.train, log=sys.stderr)
            print(json.dumps(report, indent=2) if args.json else doctor.render(report))
            return 1 if report["problems"] else 0
        from dllab import smoke

        result = smoke.train(
            Target.parse(args.target), expect or variants.expected_accelerator() or "cpu"
        )
        print(json.dumps(result, indent=2))
        return 1 if result["failures"] else 0
    except UserError as exc:
        return errors.report(exc)


if __name__ == "__main__":
    sys.exit(main())
