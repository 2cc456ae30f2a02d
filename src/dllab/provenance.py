"""What an image's venv is, proven: its tree hash as the label dllab.venv-tree (the second, short
step of `invoke build`), `invoke verify` and `invoke sbom`.

The build records, in its `proof` stage (docker/Dockerfile), under /opt/dllab/provenance:
venv-tree.txt, the manifest of /opt/venv (dllab.tree); venv-tree.sha256, its hash; and
sbom.cdx.json, the CycloneDX SBOM (dllab.sbom).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from dllab import containers, tree, variants
from dllab.errors import UserError, report

PROVENANCE = "/opt/dllab/provenance"
VENV = "/opt/venv"
MANIFEST = f"{PROVENANCE}/venv-tree.txt"
TREE_HASH = f"{PROVENANCE}/venv-tree.sha256"
SBOM = f"{PROVENANCE}/sbom.cdx.json"
LABEL = "dllab.venv-tree"
HASH_FORMAT = re.compile(r"sha256:[0-9a-f]{64}")


def capture(cmd: list[str], stdin: str | None = None, what: str = "") -> str:
    """The output of `cmd`, or a UserError with `what` (default: its last error line)."""
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if proc.returncode:
        lines = proc.stderr.strip().splitlines()
        raise UserError(
            what or f"{cmd[0]} {cmd[1]} failed: {lines[-1] if lines else proc.returncode}"
        )
    return proc.stdout


def read(image: str, path: str, platform: str | None = None) -> str:
    """A file the build recorded in `image`, or a UserError saying the image predates it."""
    return capture(
        containers.in_image_command(image, ["/bin/cat", path], platform),
        what=f"{image} has no {path}: it was built before dllab recorded its venv; rebuild it "
        "with `invoke build`",
    )


def recompute(image: str, platform: str | None = None) -> str:
    """The manifest of /opt/venv as `image` holds it now, by this checkout's dllab/tree.py run
    with the image's system Python (isolated, writing no bytecode)."""
    script = Path(tree.__file__).read_text()
    program = ["/usr/bin/python3", "-I", "-B", "-", VENV]
    return capture(containers.in_image_command(image, program, platform), stdin=script)


def image_of(variant: variants.Variant, platform: str | None) -> tuple[str, str]:
    """The platform and tag of `variant`'s image here, or a UserError naming the build to run."""
    platform = variants.docker_platform(variant, platform)
    containers.check_image(variant, platform)
    return platform, containers.image_tag(variant, platform)


def label(variant: variants.Variant, platform: str | None, revision: str) -> str:
    """Label the image `invoke build` just made with its recorded venv tree hash (a build of
    docker/label.Dockerfile, tagged as the build was); say what it labelled."""
    platform, image = image_of(variant, platform)
    value = read(image, TREE_HASH, platform).strip()
    if not HASH_FORMAT.fullmatch(value):
        raise UserError(f"{image}'s {TREE_HASH} holds no tree hash ({value[:80]!r}): rebuild it")
    image_id = capture(containers.inspect_command(image, "{{.Id}}")).strip()
    iidfile = containers.image_ids_file(variant, platform, revision)
    with tempfile.TemporaryDirectory() as empty:  # the label step needs no build context
        cmd = containers.label_command(
            image_id, value, [image, f"{image}-{revision}"], iidfile, Path(empty), platform
        )
        capture(cmd)
    return f"labelled {image} {LABEL}={value}"


def verify(variant: variants.Variant, platform: str | None = None) -> str:
    """Recompute the image's venv tree and compare it with what its build recorded and its label
    says: a line saying it matches, or a UserError naming the first path that differs."""
    platform, image = image_of(variant, platform)
    labelled = capture(containers.inspect_command(image, containers.label_template(LABEL))).strip()
    recorded = read(image, MANIFEST, platform)
    value = tree.tree_hash(recorded)
    if read(image, TREE_HASH, platform).strip() != value:
        raise UserError(f"{image}: {MANIFEST} does not match {TREE_HASH}: the image was changed")
    if labelled != value:
        raise UserError(
            f"{image}'s label {LABEL} is {labelled or 'missing'}, not its recorded tree hash "
            f"{value}: build it with `invoke build --variant {variant.name}`, which labels it"
        )
    found = recompute(image, platform)
    difference = tree.first_difference(recorded, found)
    if difference:
        path, how = difference
        raise UserError(
            f"{image}: {VENV} is not what its build recorded: first at {VENV}/{path} ({how})"
        )
    entries = len(found.splitlines()) - 1
    return f"{image}: {VENV} is what its build recorded: {LABEL}={value} ({entries} paths)"


def sbom(variant: variants.Variant, platform: str | None = None) -> str:
    """The CycloneDX SBOM the image's build recorded."""
    platform, image = image_of(variant, platform)
    return read(image, SBOM, platform)


def main(argv: list[str] | None = None) -> int:
    """`python -m dllab.provenance label|verify|sbom --variant V`: the steps invoke's tasks run."""
    parser = argparse.ArgumentParser(prog="python -m dllab.provenance")
    parser.add_argument("action", choices=("label", "verify", "sbom"))
    parser.add_argument("--variant", default="cpu", help="the image's variant")
    parser.add_argument("--platform", help="its lock platform (default: the engine's)")
    parser.add_argument("--revision", default="unknown", help="label: the build's revision tag")
    args = parser.parse_args(argv)
    try:
        variant = variants.get(args.variant)
        containers.check_engine()
        if args.action == "label":
            print(f"dllab: {label(variant, args.platform, args.revision)}", file=sys.stderr)
        elif args.action == "verify":
            print(f"dllab: {verify(variant, args.platform)}")
        else:
            sys.stdout.write(sbom(variant, args.platform))
        return 0
    except UserError as exc:
        return report(exc)


if __name__ == "__main__":
    sys.exit(main())
