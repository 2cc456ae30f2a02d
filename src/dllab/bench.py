"""`python -m dllab bench`: matmul FLOP/s against the device's peak, training throughput, start-up cost."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dllab import devices, errors, peaks, report, variants
from dllab.errors import Parser, UserError
from dllab.frameworks import TARGETS, Target
from dllab.frameworks.plugin import Mode, Model, Repeats, Settings

# Per mode: training batch, warm-up calls, repeats, seconds each repeat lasts.
MODES: dict[str, Mode] = {
    "full": {"batch": 128, "warmup": 5, "repeats": 7, "repeat_s": 1.0},
    "quick": {"batch": 128, "warmup": 3, "repeats": 3, "repeat_s": 0.2},
    # For tests: the whole machinery in seconds; its numbers mean little.
    "tiny": {"batch": 16, "warmup": 1, "repeats": 2, "repeat_s": 0.01},
}
# Per mode, how a matmul is repeated: many short repeats, the best of them its figure, as the
# datasheet's peak is at the boost clock and the reference (benchmarks/matmul_reference.py) is
# the best loop too. A GPU under a long full load lowers its clock to stay within its power
# limit: each repeat's rate is kept, and the median says what a sustained load gets.
MATMUL_REPEATS: dict[str, Repeats] = {
    "full": {"warmup": 5, "repeats": 20, "repeat_s": 0.05},
    "quick": {"warmup": 3, "repeats": 10, "repeat_s": 0.05},
    "tiny": {"warmup": 1, "repeats": 2, "repeat_s": 0.01},
}
# Per mode, the matmul's n on each accelerator: a GPU needs a bigger one to be kept busy.
MATMUL_N = {
    "full": {"cpu": 2048, "cuda": 8192, "mps": 8192},
    "quick": {"cpu": 512, "cuda": 2048, "mps": 2048},
    "tiny": {"cpu": 128, "cuda": 128, "mps": 128},
}
# The same two models in every framework: 28x28 single-channel input, as flat vectors.
MODEL: Model = {"image": 28, "hidden": 256, "channels": (16, 32), "classes": 2, "lr": 0.01}
CHILD_TIMEOUT = 600  # seconds per framework in a full run; a stuck one is recorded and skipped


def settings(
    mode: str, accelerator: str, cpu_flags: set[str], deterministic: bool = False
) -> Settings:
    """What a run measures, passed to each child as JSON."""
    side = ((MODEL["image"] - 2) // 2 - 2) // 2  # two 3x3 valid convolutions, each 2x2-pooled
    return {
        "mode": mode,
        "deterministic": deterministic,
        "n": MATMUL_N[mode][accelerator],
        "matmul_repeats": MATMUL_REPEATS[mode],
        "dtypes": peaks.dtypes(accelerator, cpu_flags),
        **MODES[mode],
        **MODEL,
        "cnn_flat": MODEL["channels"][-1] * side * side,
        "note": "matmul: the best of short repeats (median: sustained); float32 matmul is "
        "strict IEEE float32 (TF32 off); training: the median, in each framework's default "
        "float32 math",
    }


def run(
    accelerator: str, mode: str, targets=TARGETS, log=sys.stderr, deterministic: bool = False
) -> dict[str, Any]:
    """Measure each target in a fresh process, one after another so that none slows another."""
    date = datetime.now(UTC).isoformat(timespec="seconds")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None  # a busy machine measures low
    cpuinfo = peaks.CPUINFO.read_text() if peaks.CPUINFO.exists() else ""
    spec = settings(mode, accelerator, peaks.parse_cpuinfo(cpuinfo)["flags"], deterministic)
    results = [measure_target(target, accelerator, spec, log) for target in targets]
    gpu_name = next((r["device_name"] for r in results if r.get("device_name")), None)
    device = peaks.device(accelerator, cpuinfo, gpu_name)
    for result in results:
        for dtype, entry in result.get("matmul", {}).items():
            peak = device["peak"]["flops"].get(dtype)
            if "max" in entry:
                entry["peak_fraction"] = entry["max"] / peak if peak else None
    facts = devices.system()
    facts["promised_accelerator"] = facts.pop("accelerator")
    return {
        "schema": 1,
        "date": date,
        "host": socket.gethostname(),
        **facts,
        "lock_digest": os.environ.get("DLLAB_LOCK_DIGEST"),
        "load_average_before": load,
        "accelerator": accelerator,
        "device": device,
        "settings": spec,
        "results": results,
    }


def measure_target(target: Target, accelerator: str, spec: Settings, log) -> dict[str, Any]:
    """One target's results from a fresh child process, or why there are none."""
    if not target.installed():
        print(f"dllab bench: {target.name}: not installed", file=log)
        return {
            "target": target.name,
            "installed": False,
            "error": f"not installed: no {' or '.join(target.needs)}",
        }
    print(f"dllab bench: measuring {target.name} on {accelerator} ({spec['mode']}) ...", file=log)
    start = time.perf_counter()
    timeout = CHILD_TIMEOUT if spec["mode"] == "full" else devices.PROBE_TIMEOUT
    result = devices.run_child(target, "bench", accelerator, json.dumps(spec), timeout=timeout)
    result.update(installed=True, wall_s=time.perf_counter() - start)
    if not result.get("error") and result.get("device_kind") != accelerator:
        result["error"] = f"measured on {result.get('device')}, not on {accelerator}"
    outcome = f"error: {result['error']}" if result.get("error") else "done"
    print(f"dllab bench: {target.name}: {outcome} ({result['wall_s']:.1f} s)", file=log)
    return result


def build_parser() -> Parser:
    parser = Parser(prog="dllab bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and few repeats: about a minute on 2 cores",
    )
    parser.add_argument(
        "--expect",
        choices=variants.ACCELERATORS,
        help="accelerator to measure (default: the promised one, $DLLAB_ACCELERATOR, else cpu)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path(".bench"), help="folder for JSON and PNG (default: .bench)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=[t.name for t in TARGETS],
        help="measure only this target (repeatable; default: all six)",
    )
    parser.add_argument(
        "--print-json", action="store_true", help="print the JSON results instead of the table"
    )
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="turn on each framework's determinism switches: what bit-identical repeats cost",
    )
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests only
    return parser


def main(argv: list[str]) -> int:
    """Run the benchmark, save JSON and chart, print the Markdown table; 1 if a framework failed."""
    try:
        args = build_parser().parse_args(argv)
        accelerator = variants.check_accelerator(
            args.expect or variants.expected_accelerator() or "cpu"
        )
    except UserError as exc:
        return errors.report(exc)
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    targets = [t for t in TARGETS if not args.only or t.name in args.only]
    results = run(accelerator, mode, targets, deterministic=args.deterministic)
    results["command"] = shlex.join(["dllab", "bench", *argv])
    path = report.save(results, args.out)
    print(f"dllab bench: wrote {path} and {results['chart']}", file=sys.stderr)
    print(json.dumps(results, indent=2) if args.print_json else report.markdown(results))
    return 1 if any(r.get("installed") and r.get("error") for r in results["results"]) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
