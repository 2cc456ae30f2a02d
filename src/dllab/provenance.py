"""What an image's venv is, proven: its tree hash as the label dllab.venv-tree (the second, short
step of `invoke build`), `invoke verify` and `invoke sbom`.

The build records, in its `proof` stage (docker/Dockerfile), under /opt/dllab/provenance:
venv-tree.txt, the manifest of /opt/venv (dllab.tree); venv-tree.sha256, its hash; and
sbom.cdx.json, the CycloneDX SBOM (dllab.sbom).
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from dllab import containers, tree, variants
from dllab.errors import Parser, UserError, report
from dllab.runner import Runner

PROVENANCE = "/opt/dllab/provenance"
VENV = "/opt/venv"
MANIFEST = f"{PROVENANCE}/venv-tree.txt"
TREE_HASH = f"{PROVENANCE}/venv-tree.sha256"
SBOM = f"{PROVENANCE}/sbom.cdx.json"
LABEL = "dllab.venv-tree"
HASH_FORMAT = re.compile(r"sha256:[0-9a-f]{64}")


def capture(run: Runner, cmd: list[str], stdin: str | None = None, what: str = "") -> str:
    """The output of `cmd`, or a UserError with `what` (default: its last error line)."""
    done = run(cmd, input=stdin)
    if not done.ok:
        raise UserError(what or f"{cmd[0]} {cmd[1]} failed: {done.last_line()}")
    return done.out


def read(run: Runner, image: str, path: str, platform: str | None = None) -> str:
    """A file the build recorded in `image`, or a UserError saying the image predates it."""
    return capture(
        run,
        containers.in_image_command(image, ["/bin/cat", path], platform),
        what=f"{image} has no {path}: it was built before dllab recorded its venv; rebuild it "
        "with `invoke build`",
    )


def recompute(run: Runner, image: str, platform: str | None = None) -> str:
    """The manifest of /opt/venv as `image` holds it now, by this checkout's dllab/tree.py run
    with the image's system Python (isolated, writing no bytecode)."""
    script = Path(tree.__file__).read_text()
    program = ["/usr/bin/python3", "-I", "-B", "-", VENV]
    return capture(run, containers.in_image_command(image, program, platform), stdin=script)


def image_of(run: Runner, variant: variants.Variant, platform: str | None) -> tuple[str, str]:
    """The platform and tag of `variant`'s image here, or a UserError naming the build to run."""
    platform = variants.docker_platform(variant, platform)
    containers.check_image(variant, platform, run=run)
    return platform, containers.image_tag(variant, platform)


def label(run: Runner, variant: variants.Variant, platform: str | None, revision: str) -> str:
    """Label the image `invoke build` just made with its recorded venv tree hash (a build of
    docker/label.Dockerfile, tagged as the build was); say what it labelled."""
    platform, image = image_of(run, variant, platform)
    value = read(run, image, TREE_HASH, platform).strip()
    if not HASH_FORMAT.fullmatch(value):
        raise UserError(f"{image}'s {TREE_HASH} holds no tree hash ({value[:80]!r}): rebuild it")
    image_id = capture(run, containers.image_inspect_command(image, "{{.Id}}")).strip()
    iidfile = containers.image_ids_file(variant, platform, revision)
    with tempfile.TemporaryDirectory() as empty:  # the label step needs no build context
        cmd = containers.label_command(
            image_id, value, [image, f"{image}-{revision}"], iidfile, Path(empty), platform
        )
        run.checked(cmd)
    return f"labelled {image} {LABEL}={value}"


def verify(run: Runner, variant: variants.Variant, platform: str | None = None) -> str:
    """Recompute the image's venv tree and compare it with what its build recorded and its label
    says: a line saying it matches, or a UserError naming the first path that differs."""
    containers.check_engine(run)
    platform, image = image_of(run, variant, platform)
    labelled = capture(run, containers.image_inspect_command(image, containers.label_template(LABEL))).strip()  # fmt: skip
    recorded = read(run, image, MANIFEST, platform)
    value = tree.tree_hash(recorded)
    if read(run, image, TREE_HASH, platform).strip() != value:
        raise UserError(f"{image}: {MANIFEST} does not match {TREE_HASH}: the image was changed")
    if labelled != value:
        raise UserError(
            f"{image}'s label {LABEL} is {labelled or 'missing'}, not its recorded tree hash "
            f"{value}: build it with `invoke build --variant {variant.name}`, which labels it"
        )
    found = recompute(run, image, platform)
    difference = tree.first_difference(recorded, found)
    if difference:
        path, how = difference
        raise UserError(
            f"{image}: {VENV} is not what its build recorded: first at {VENV}/{path} ({how})"
        )
    entries = len(found.splitlines()) - 1
    return f"{image}: {VENV} is what its build recorded: {LABEL}={value} ({entries} paths)"


def sbom(run: Runner, variant: variants.Variant, platform: str | None = None) -> str:
    """The CycloneDX SBOM the image's build recorded."""
    containers.check_engine(run)
    platform, image = image_of(run, variant, platform)
    return read(run, image, SBOM, platform)


def main(argv: list[str] | None = None) -> int:
    """`python -m dllab.provenance verify|sbom --variant V`: `invoke verify` and `invoke sbom`."""
    parser = Parser(prog="python -m dllab.provenance")
    parser.add_argument("action", choices=("verify", "sbom"))
    parser.add_argument("--variant", default="cpu", help="the image's variant")
    parser.add_argument("--platform", help="its lock platform (default: the engine's)")
    try:
        args = parser.parse_args(argv)
        variant = variants.get(args.variant)
        if args.action == "verify":
            print(f"dllab: {verify(Runner(), variant, args.platform)}")
        else:
            sys.stdout.write(sbom(Runner(), variant, args.platform))
        return 0
    except UserError as exc:
        return report(exc)


if __name__ == "__main__":
    sys.exit(main())
