"""The images: the wheelhouse (offline builds), `docker build` of a variant, and `invoke clean`."""

from __future__ import annotations

import sys
import time

from dllab import containers, locks, native, private, provenance, registry, variants
from dllab.containers import Owner
from dllab.errors import UserError, say
from dllab.runner import Runner
from dllab.variants import ROOT, Variant


def duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def revision(run: Runner) -> str:
    """This checkout's commit, short (`unknown` outside git)."""
    done = run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    return (done.out.strip() if done.ok else "") or "unknown"


def wheelhouse(run: Runner, variant: Variant, platform: str) -> None:
    """Download every wheel of the lock (and the SBOM tools' lock) into a folder and an image,
    for offline builds."""
    lock = variant.lock(platform)
    folder, wheels = (
        containers.wheelhouse(variant, platform),
        containers.wheels_image(variant, platform),
    )
    containers.check_engine(run)
    # Kept when it holds these very locks' wheels: no download, and the same image ID, so the
    # frameworks' layer of the next build stays cached (a rebuilt one would redo it).
    label = '{{index .Config.Labels "' + containers.WHEELS_LOCK_LABEL + '"}}'
    held = run(containers.image_inspect_command(wheels, label))
    if held.ok and held.out.strip() == containers.wheels_lock_digest(variant, platform):
        say(f"{wheels} already holds the wheels of {lock.name} (and the SBOM tools'): nothing to download")  # fmt: skip
        return
    started = time.monotonic()
    needed = containers.wheel_locks(variant, platform)  # the variant's, and the SBOM tools'
    count = sum(len(locks.pins(each)) for each in needed)
    say(f"downloading the {count} wheels of {' and '.join(each.name for each in needed)} into "
        f"{folder} (those already there are kept)")  # fmt: skip
    cmd = [
        sys.executable, "-m", "pip", "download", "--progress-bar", "on", "--no-deps",
        "--require-hashes", "--only-binary=:all:", "--python-version", variants.PYTHON_MINOR,
        "--implementation", "cp", "--abi", variants.PYTHON_ABI,
    ]  # fmt: skip
    for tag in variants.PLATFORMS[platform].wheel_tags:
        cmd += ["--platform", tag]
    if index := variants.torch_index(variant):
        cmd += ["--extra-index-url", index]
    # One download per lock: the SBOM tools' lock may pin another version of a shared package.
    for each in needed:
        run.checked([*cmd, "-r", str(each), "-d", str(folder)], quiet=False)
    # Wheels of an older lock go: the image holds these locks' wheels, exactly, as a fresh
    # clone's would, so the two share the frameworks' layer in the build cache.
    pins = {f"{name}=={version}" for each in needed for name, version in locks.pins(each).items()}
    stale = [str(w) for w in sorted(folder.glob("*.whl"))
             if f"{locks.canonical(w.name.split('-')[0])}=={w.name.split('-')[1]}" not in pins]  # fmt: skip
    if stale:
        run.checked(["rm", "-f", "--", *stale])
    run.checked(containers.wheels_image_command(variant, platform))
    if not run.dry:
        files = list(folder.glob("*.whl"))
        size = sum(wheel.stat().st_size for wheel in files)
        say(f"wheelhouse {variant.name}-{platform}: {len(files)} wheels, {size / 1e9:.2f} GB in "
            f"{folder} and {wheels}, in {duration(time.monotonic() - started)}")  # fmt: skip


def build(
    run: Runner, variant: Variant, platform: str | None = None, offline: bool = False
) -> None:
    """Build dllab:<variant> for `platform` (default: the engine's), streaming each step; a
    native-only variant builds its native environment."""
    if variants.check_runtime(variant) == "native":
        native.build(run, variant)
        return
    platform = variants.docker_platform(variant, platform)
    if problem := locks.stale(variant, platform):  # a corrupt or stale lock: refused first
        raise UserError(problem)
    containers.check_engine(run)
    wheels = containers.wheels_image(variant, platform)
    if offline and not containers.image_exists(wheels, run):
        raise UserError(
            f"no {wheels} image for an offline build: run `invoke wheelhouse --variant {variant.name}` first"
        )
    rev = revision(run)
    if not run.dry:
        private.folder(containers.image_ids_file(variant, platform, rev).parent)
    started = time.monotonic()
    run.checked(containers.build_command(variant, platform, rev, offline), quiet=False)
    if not run.dry:  # the second, short step: the venv tree hash the build recorded, as a label
        say(provenance.label(run, variant, platform, rev))
        tag = containers.image_tag(variant, platform)
        size = run(containers.image_inspect_command(tag, "{{.Size}}")).out.strip()
        weight = f"{int(size) / 1e9:.2f} GB" if size.isdigit() else "size unknown"
        say(f"built {tag} ({rev}, {'offline' if offline else 'online'}): {weight}, "
            f"in {duration(time.monotonic() - started)}")  # fmt: skip


def ensure(run: Runner, variant: Variant, platform: str, build_here: bool = False) -> None:
    """The image, on first use: pulled from the configured registry (the tag of this checkout's
    locks), else built (from the wheelhouse when `invoke wheelhouse` made one). `build_here`:
    build it now (its cached steps reused), never pulling."""
    image = containers.image_tag(variant, platform)
    if not build_here and (
        containers.image_exists(image, run) or registry.pull(run, variant, platform)
    ):
        return
    wheels = containers.wheels_image(variant, platform)
    offline = containers.image_exists(wheels, run)
    source = f"offline, from {wheels}" if offline else "downloading the frameworks"
    if build_here:
        say(f"building {image} here (--build; {source}; cached steps are reused)")
    else:
        say(f"no {image} image yet: building it now, once ({source}; several minutes, each step shows)")  # fmt: skip
    build(run, variant, platform, offline)


def clean(run: Runner, chosen: list[Variant]) -> None:
    """Remove your labs' and workers' containers and networks in this checkout and instance, and
    the images this checkout built; never your work, never a hub's (`invoke hub --stop`)."""
    containers.check_engine(run)
    owner = Owner.current()
    for variant in chosen:
        for role in ("lab", "worker", "run", "bench"):
            filters = owner.filters(**{"dllab.variant": variant.name, "dllab.role": role})
            found = run(containers.list_command(filters)).out.split()
            if found:
                run(containers.remove_command(*found))
        workers = owner.filters(**{"dllab.variant": variant.name, "dllab.role": "worker"})
        networks = run(containers.networks_command(workers)).out.split()
        if networks:
            run(containers.remove_networks_command(*networks))
        # Only tags that point at an image this checkout's `invoke build` recorded: never an
        # image built FROM it, a `docker commit`, or another checkout's build.
        built = {p.read_text().strip() for p in (containers.state_dir() / "images").glob(f"{variant.name}-*.id")}  # fmt: skip
        listing = run(containers.images_command(variant.image.split(":")[0])).out
        for line in listing.splitlines():
            tag, _, image_id = line.partition(" ")
            own_tag = tag == variant.image or tag.startswith(f"{variant.image}-")
            if own_tag and image_id in built:
                run.checked(containers.remove_image_command(tag))
