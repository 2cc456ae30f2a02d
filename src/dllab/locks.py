"""Hashed lock files, one per variant and platform, compiled from pyproject.toml's extras by uv."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from dllab import variants
from dllab.errors import UserError

PYPROJECT = variants.ROOT / "pyproject.toml"
# Debian bookworm's python, the image base: the oldest Python every lock must install on.
PYTHON = "3.11.2"
DIGEST_PREFIX = "# dllab-source-digest: "


def source(variant: variants.Variant, pyproject: Path = PYPROJECT) -> list[str]:
    """The requirement lines the lock of `variant` is compiled from (its extra, with lab expanded)."""
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    lines = []
    for req in extras[variant.name]:
        lines += extras[req[6:-1]] if req.startswith("dllab[") else [req]
    return lines


def digest(variant: variants.Variant, platform: str, pyproject: Path = PYPROJECT) -> str:
    """What a lock was compiled from, hashed: it changes whenever the source does."""
    text = json.dumps([source(variant, pyproject), platform, PYTHON])
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def compile_command(variant: variants.Variant, platform: str, find_links: list[str]) -> list[str]:
    """The uv command that writes the lock of `variant` for `platform`."""
    index = variants.torch_index(variant)
    cmd = [
        "uv", "pip", "compile", str(PYPROJECT), "--extra", variant.name,
        "--python-version", PYTHON, "--python-platform", variants.PLATFORMS[platform].uv,
        "--generate-hashes", "--no-emit-find-links", "--native-tls", "--quiet",
        "--custom-compile-command", f"invoke lock --variant {variant.name}",
        "--output-file", str(variant.lock(platform)),
    ]  # fmt: skip
    for link in find_links:
        cmd += ["--find-links", link]
    return cmd + (["--extra-index-url", index] if index else [])


def write(variant: variants.Variant, platform: str, find_links: list[str]) -> Path:
    """Compile the lock, then stamp it with its source digest."""
    lock = variant.lock(platform)
    # torch>=2.11 ships macOS 14 wheels only; uv reads the target macOS from this variable.
    env = {"MACOSX_DEPLOYMENT_TARGET": "14.0"} if platform.startswith("macos") else {}
    subprocess.run(
        compile_command(variant, platform, find_links), check=True, env={**os.environ, **env}
    )
    lock.write_text(lock.read_text() + f"{DIGEST_PREFIX}{digest(variant, platform)}\n")
    return lock


def stale(variant: variants.Variant, platform: str) -> str | None:
    """Why the lock of `variant` for `platform` no longer matches its source, or None."""
    lock = variant.lock(platform)
    if not lock.exists():
        return f"{lock.name} is missing: run `invoke lock --variant {variant.name}`"
    recorded = next(
        (line[len(DIGEST_PREFIX):].strip() for line in lock.read_text().splitlines()
         if line.startswith(DIGEST_PREFIX)),
        None,
    )  # fmt: skip
    if recorded != digest(variant, platform):
        return (
            f"{lock.name} is stale: pyproject.toml's [{variant.name}] extra changed since it was "
            f"compiled: run `invoke lock --variant {variant.name}`"
        )
    return None


def pins(lock: Path) -> dict[str, str]:
    """name -> version of every package a lock pins."""
    found = {}
    for line in lock.read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, version = line.split(" ")[0].split("==")
            found[name.lower()] = version
    return found


def check_wheels_command(variant: variants.Variant, platform: str, report: Path) -> list[str]:
    """A pip dry run that finds a wheel, with the locked hash, for every pin on `platform`."""
    cmd = [
        sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps",
        "--only-binary=:all:", "--ignore-installed", "--require-hashes",
        "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
        "--target", str(report.parent / "target"), "--report", str(report),
        "-r", str(variant.lock(platform)),
    ]  # fmt: skip
    for tag in variants.PLATFORMS[platform].wheel_tags:
        cmd += ["--platform", tag]
    return cmd


def main(argv: list[str] | None = None) -> int:
    """`python -m dllab.locks compile|check`: the lock steps `invoke lock` runs."""
    parser = argparse.ArgumentParser(prog="python -m dllab.locks")
    parser.add_argument("action", choices=("compile", "check"))
    parser.add_argument("--variant", action="append", help="variant (repeatable; default: all)")
    parser.add_argument(
        "--find-links", action="append", default=[], help="extra wheel folder for uv"
    )
    args = parser.parse_args(argv)
    try:
        chosen = (
            [variants.get(v) for v in args.variant]
            if args.variant
            else list(variants.VARIANTS.values())
        )
        problems = []
        for variant in chosen:
            for platform in variant.platforms:
                if args.action == "compile":
                    print(f"locking {variant.name} for {platform}", file=sys.stderr)
                    write(variant, platform, args.find_links)
                elif why := stale(variant, platform):
                    problems.append(why)
        for why in problems:
            print(f"dllab: {why}", file=sys.stderr)
        return 1 if problems else 0
    except UserError as exc:
        print(f"dllab: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
