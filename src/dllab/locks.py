"""Hashed lock files, one per variant and platform, compiled from pyproject.toml's extras by uv."""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import shutil
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

from dllab import variants
from dllab.errors import Parser, UserError, report
from dllab.runner import Runner

PYPROJECT = variants.ROOT / "pyproject.toml"
PYTHON = variants.PYTHON
DIGEST_PREFIX = "# dllab-source-digest: "
# The digest of the lock's own text above this line: a pin or hash cut short, or edited by
# hand, no longer matches it.
CONTENT_PREFIX = "# dllab-lock-digest: "
# The day a lock was resolved as of: nothing in it was uploaded on that day or later (UTC), but the
# pins exempted on the lines that follow it.
AS_OF_PREFIX = "# dllab-as-of: "
EXEMPT_PREFIX = "# dllab-as-of-exempt: "

# Pins that uv's --exclude-newer cannot date, by variant: their files come from an index that
# records no upload time (PEP 700), so uv would see no candidate at all. Each must be pinned
# exactly (==) in pyproject.toml, so that the exemption cannot let its version float.
AS_OF_EXEMPT = {
    "cpu": {
        "torch": "its +cpu build comes from PyTorch's CPU index, which records no upload times",
    },
}


@dataclass(frozen=True)
class Tools(variants.Variant):
    """Tools the image build runs, locked like a variant from the extra of their name, into
    locks/tools/ (locks/*.txt are the variants' own)."""

    def lock(self, platform: str) -> Path:
        return variants.LOCKS / "tools" / f"{self.name}-{platform}.txt"


# The SBOM generator (the CycloneDX project's cyclonedx-bom), for each Linux platform from
# pyproject.toml's `sbom` extra. It runs in a build stage that is not shipped.
SBOM = Tools(
    name="sbom",
    accelerator="cpu",
    runtimes=(),
    platforms=("linux-x86_64", "linux-aarch64"),
    frameworks=(),
    summary="cyclonedx-bom, for the images' SBOM (a build stage only)",
)


def source(variant: variants.Variant, pyproject: Path = PYPROJECT) -> list[str]:
    """The requirement lines the lock of `variant` is compiled from (its extra, with lab expanded)."""
    try:
        extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    except tomllib.TOMLDecodeError as exc:
        raise UserError(
            f"{pyproject.name} is not valid TOML ({exc}): fix it, then relock"
        ) from None
    lines: list[str] = []
    for req in extras[variant.name]:
        lines += extras[req[6:-1]] if req.startswith("dllab[") else [req]
    return lines


def digest(variant: variants.Variant, platform: str, pyproject: Path = PYPROJECT) -> str:
    """What a lock was compiled from, hashed: it changes whenever the source does."""
    excludes = [list(variant.lock_excludes)] if variant.lock_excludes else []
    text = json.dumps([source(variant, pyproject), platform, PYTHON, *excludes])
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def uv() -> str:
    """uv: beside this Python (where `pip install -e '.[dev]'` puts it), else on PATH."""
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else "uv"


def cutoff(as_of: datetime.date) -> str:
    """uv's --exclude-newer for a lock as of `as_of`: the start of that day, UTC, so that any day
    up to today resolves the same whenever it is run again."""
    return f"{as_of.isoformat()}T00:00:00Z"


def exempt(variant: variants.Variant) -> dict[str, str]:
    """Package -> why its pin is exempt from the as-of date, for `variant`'s locks."""
    return AS_OF_EXEMPT.get(variant.name, {})


def compile_command(
    variant: variants.Variant,
    platform: str,
    find_links: list[str],
    as_of: datetime.date,
    output: Path,
    fresh: bool = False,
) -> list[str]:
    """The uv command that writes the lock of `variant` for `platform` to `output`, as of `as_of`.

    uv keeps the pins of an existing `output` where they still fit; `fresh` resolves anew."""
    index = variants.torch_index(variant) if "torch" in variant.frameworks else ""
    cmd = [
        uv(), "pip", "compile", str(PYPROJECT), "--extra", variant.name,
        "--python-version", PYTHON, "--python-platform", variants.PLATFORMS[platform].uv,
        "--generate-hashes", "--no-emit-find-links", "--system-certs", "--quiet",
        "--custom-compile-command", f"invoke lock --variant {variant.name}",
        "--exclude-newer", cutoff(as_of),
        "--output-file", str(output),
    ]  # fmt: skip
    for package in exempt(variant):
        cmd += ["--exclude-newer-package", f"{package}=false"]
    if fresh:
        cmd.append("--upgrade")
    for package in variant.lock_excludes:
        cmd += ["--no-emit-package", package]
    for link in find_links:
        cmd += ["--find-links", link]
    return cmd + (["--extra-index-url", index] if index else [])


def trailer(variant: variants.Variant, platform: str, as_of: datetime.date) -> str:
    """The lines `invoke lock` ends a lock with, before its own digest: date, exemptions, source."""
    lines = [f"{AS_OF_PREFIX}{as_of.isoformat()}"]
    lines += [f"{EXEMPT_PREFIX}{name}: {why}" for name, why in sorted(exempt(variant).items())]
    return "\n".join([*lines, f"{DIGEST_PREFIX}{digest(variant, platform)}"]) + "\n"


def resolve(
    variant: variants.Variant,
    platform: str,
    find_links: list[str],
    as_of: datetime.date,
    folder: Path,
    fresh: bool = False,
) -> Path:
    """Compile the lock into `folder` (starting from the current lock's pins unless `fresh`), then
    stamp it; a UserError in one line if nothing resolves as of `as_of`."""
    lock = folder / variant.lock(platform).name
    if variant.lock(platform).exists() and not fresh:
        shutil.copyfile(variant.lock(platform), lock)
    # torch>=2.11 ships macOS 14 wheels only; uv reads the target macOS from this variable.
    env = {"MACOSX_DEPLOYMENT_TARGET": "14.0"} if platform.startswith("macos") else {}
    done = Runner()(compile_command(variant, platform, find_links, as_of, lock, fresh), env=env)
    if done.code == 127:
        raise UserError("uv is not installed: pip install -e '.[dev]' (it is a dev tool)")
    if not done.ok:
        raise UserError(unresolved(variant, platform, as_of, done.err))
    text = lock.read_text() + trailer(variant, platform, as_of)
    lock.write_text(text + f"{CONTENT_PREFIX}{content_digest(text)}\n")
    return lock


def unresolved(variant: variants.Variant, platform: str, as_of: datetime.date, stderr: str) -> str:
    """One line for a lock uv could not resolve: which pin did not exist yet, or uv's own reason."""
    what = f"the {variant.name} lock for {platform} does not resolve as of {as_of.isoformat()}"
    late = re.search(
        r"`([^`]+)` was filtered by `exclude-newer`.*?requested version, v(\S+), was published at "
        r"(\d{4}-\d\d-\d\d)",
        stderr,
        re.DOTALL,
    )
    if late:
        name, version, day = late.groups()
        return (
            f"{what}: {name} {version}, which pyproject.toml asks for, was published on {day}: "
            "choose a later --as-of date, or an older pin"
        )
    lines = [line.strip() for line in stderr.splitlines() if line.strip()] or ["(no output)"]
    reason = next((line for line in lines if line.startswith("cause:")), None)
    reason = reason or next((line for line in lines if line.startswith("error:")), lines[-1])
    return f"{what}: uv says {reason.partition(': ')[2] or reason}"


def parse_as_of(text: str, today: datetime.date | None = None) -> datetime.date:
    """An --as-of value as a date that has begun, or a UserError saying what is wrong with it."""
    today = today or datetime.datetime.now(datetime.UTC).date()
    try:
        day = datetime.date.fromisoformat(text)
    except ValueError:
        raise UserError(f"--as-of must be a date as YYYY-MM-DD, not {text!r}") from None
    if day > today:
        raise UserError(
            f"--as-of {day.isoformat()} is in the future (today is {today.isoformat()}, UTC): "
            "choose today or an earlier day"
        )
    return day


def recorded_as_of(lock: Path) -> datetime.date | None:
    """The as-of date a lock records, if it has a valid one."""
    if not lock.exists():
        return None
    try:
        return datetime.date.fromisoformat(recorded(lock.read_text(), AS_OF_PREFIX) or "")
    except ValueError:
        return None


def environment_yml(variant: variants.Variant, platform: str) -> str:
    """environment.yml for conda/mamba: Python from conda, the source's packages at the lock's pins."""
    pinned = pins(variant.lock(platform))
    names = sorted({requirement_name(req) for req in source(variant)})
    env = "\n".join(
        f'    {k}: "{v}"'
        for k, v in (
            ("DLLAB_VARIANT", variant.name),
            ("DLLAB_ACCELERATOR", variant.accelerator),
            *variant.env,
        )
    )
    deps = "\n".join(f"      - {name}=={pinned[name]}" for name in names)
    return f"""# Generated by `invoke lock --variant {variant.name}` from locks/{variant.lock(platform).name}: do not edit.
# The {variant.name} variant, natively ({platform}): `mamba env create -f environment.yml`,
# then `pip install --no-deps -e .` in the new environment.
name: dllab-{variant.name}
channels:
  - conda-forge
  - nodefaults
dependencies:
  - python=3.11
  - pip
  - pip:
{deps}
variables:
{env}
"""


ENVIRONMENT_YML = variants.ROOT / "environment.yml"


def content_digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def file_digest(variant: variants.Variant, platform: str) -> str:
    """The sha256 of the whole lock file (as `sha256sum` prints it): which exact pins an image's
    venv was installed from (its label dllab.lock-file)."""
    return content_digest(variant.lock(platform).read_text())


def recorded(text: str, prefix: str) -> str | None:
    """The value of the trailer line starting with `prefix`, if the lock has one."""
    return next(
        (line[len(prefix) :].strip() for line in text.splitlines() if line.startswith(prefix)),
        None,
    )


def stale(variant: variants.Variant, platform: str) -> str | None:
    """Why the lock of `variant` for `platform` is corrupt or no longer matches its source, or None."""
    lock = variant.lock(platform)
    relock = f"run `invoke lock --variant {variant.name}`"
    if not lock.exists():
        return f"{lock.name} is missing: {relock}"
    text = lock.read_text()
    body = text.split(CONTENT_PREFIX, 1)[0]
    if recorded(text, CONTENT_PREFIX) != content_digest(body):
        return f"{lock.name} was cut short or edited by hand since `invoke lock` wrote it: {relock}"
    if recorded(text, DIGEST_PREFIX) != digest(variant, platform):
        return (
            f"{lock.name} is stale: pyproject.toml's [{variant.name}] extra changed since it was "
            f"compiled: run `invoke lock --variant {variant.name}`"
        )
    return as_of_problem(variant, platform, text)


def as_of_problem(variant: variants.Variant, platform: str, text: str) -> str | None:
    """Why the lock's as-of record is missing or wrong (its date, its exemptions), or None."""
    lock = variant.lock(platform).name
    as_of = recorded_as_of(variant.lock(platform))
    if as_of is None:
        return f"{lock} records no as-of date: run `invoke lock --variant {variant.name}`"
    try:
        parse_as_of(as_of.isoformat())
    except UserError:
        return f"{lock} says it was resolved as of {as_of.isoformat()}, a day still to come"
    for req in source(variant):
        if requirement_name(req) in exempt(variant) and "==" not in req.split(";")[0]:
            return (
                f"{requirement_name(req)} is exempt from the as-of date, so pyproject.toml's "
                f"[{variant.name}] extra must pin it exactly (==), not {req!r}: pin it, or drop "
                "the exemption"
            )
    if trailer(variant, platform, as_of) not in text:
        return (
            f"{lock}'s exemptions from its as-of date are not locks.AS_OF_EXEMPT's: "
            f"run `invoke lock --variant {variant.name}`"
        )
    return None


def resolved_again(
    variant: variants.Variant, platform: str, find_links: list[str], folder: Path
) -> str | None:
    """Resolve a lock again as of the date it records, from its own pins: uv keeps every pin
    that existed by then, so any change names a pin newer than the date (None if all stay)."""
    as_of = recorded_as_of(variant.lock(platform))
    assert as_of is not None, "check stale() first"
    again = resolve(variant, platform, find_links, as_of, folder).read_text().splitlines()
    before = variant.lock(platform).read_text().splitlines()
    changed = next(
        (new for new, old in zip_longest(again, before, fillvalue="") if new != old), None
    )
    if changed is None:
        return None
    return (
        f"{variant.lock(platform).name} does not resolve to itself as of {as_of.isoformat()}: "
        f"uv now writes {changed.strip() or 'nothing'!r} where it has another line"
    )


def canonical(name: str) -> str:
    """A package name as PEP 503 compares them: jupyter_core == Jupyter-Core."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(req: str) -> str:
    """The canonical package name a requirement line is about: `keras==3.15.1` -> keras."""
    return canonical(re.split(r"[\[=<>;!~ ]", req, maxsplit=1)[0])


def pins(lock: Path) -> dict[str, str]:
    """name -> version of every package a lock pins."""
    found = {}
    for line in lock.read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, version = line.split(" ")[0].split("==")
            found[canonical(name)] = version
    return found


def check_wheels_command(variant: variants.Variant, platform: str, report: Path) -> list[str]:
    """A pip dry run that finds a wheel, with the locked hash, for every pin on `platform`."""
    cmd = [
        sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps",
        "--only-binary=:all:", "--ignore-installed", "--require-hashes",
        "--python-version", variants.PYTHON_MINOR, "--implementation", "cp", "--abi", variants.PYTHON_ABI,
        "--target", str(report.parent / "target"), "--report", str(report),
        "-r", str(variant.lock(platform)),
    ]  # fmt: skip
    for tag in variants.PLATFORMS[platform].wheel_tags:
        cmd += ["--platform", tag]
    return cmd


def lock_sets(names: list[str] | None = None) -> list[variants.Variant]:
    """The variants named (default: all), and the SBOM tools' locks when none is named."""
    if names:
        return [SBOM if name == SBOM.name else variants.get(name) for name in names]
    return [*variants.VARIANTS.values(), SBOM]


def relock(
    chosen: list[variants.Variant], find_links: list[str], as_of: datetime.date | None
) -> list[Path]:
    """Resolve every lock of `chosen` into a scratch folder, then move them all into place: a
    lock that fails leaves every lock as it was. --as-of resolves each anew as of that day;
    without it each keeps its pins and its own date (today for a lock that has none)."""
    today = datetime.datetime.now(datetime.UTC).date()
    with tempfile.TemporaryDirectory() as scratch:
        made = []
        for variant in chosen:
            for platform in variant.platforms:
                day = as_of or recorded_as_of(variant.lock(platform)) or today
                print(f"locking {variant.name} for {platform} as of {day.isoformat()}",
                      file=sys.stderr, flush=True)  # fmt: skip
                lock = resolve(variant, platform, find_links, day, Path(scratch), as_of is not None)
                made.append((variant, platform, lock))
        for variant, platform, lock in made:
            shutil.move(lock, variant.lock(platform))
            if variant.conda_file:
                (variants.ROOT / variant.conda_file).write_text(environment_yml(variant, platform))
    return [variant.lock(platform) for variant, platform, _ in made]


def main(argv: list[str] | None = None) -> int:
    """`python -m dllab.locks compile|check`: the lock steps `invoke lock` runs."""
    parser = Parser(prog="python -m dllab.locks")
    parser.add_argument("action", choices=("compile", "check"))
    parser.add_argument(
        "--variant", action="append", help="variant, or sbom (repeatable; default: all)"
    )
    parser.add_argument(
        "--find-links", action="append", default=[], help="extra wheel folder for uv"
    )
    parser.add_argument("--as-of", help="compile: resolve anew with nothing newer (YYYY-MM-DD)")
    parser.add_argument(
        "--resolve",
        action="store_true",
        help="check: also resolve each lock again as of its date (uv, the indexes)",
    )
    try:
        args = parser.parse_args(argv)
        chosen = lock_sets(args.variant)
        if args.action == "compile":
            relock(chosen, args.find_links, parse_as_of(args.as_of) if args.as_of else None)
            return 0
        if args.as_of:
            raise UserError("--as-of relocks: use it without --check")
        problems = [why for v in chosen for p in v.platforms if (why := stale(v, p))]
        if args.resolve and not problems:
            with tempfile.TemporaryDirectory() as scratch:
                problems = [
                    why
                    for v in chosen
                    for p in v.platforms
                    if (why := resolved_again(v, p, args.find_links, Path(scratch)))
                ]
        for why in problems:
            print(f"dllab: {why}", file=sys.stderr)
        return 1 if problems else 0
    except UserError as exc:
        return report(exc)


if __name__ == "__main__":
    sys.exit(main())
