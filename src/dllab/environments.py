"""Run dllab's own commands (tests, doctor, bench) where a variant lives: here, in its native
environment, or in its image, expecting the accelerator it promises."""

from __future__ import annotations

import importlib.util
import sys

from dllab import containers, images, lab, locks, native, variants
from dllab.containers import Owner
from dllab.errors import UserError, task_command
from dllab.runner import Runner
from dllab.variants import Variant

SUITES = ["tests/env", "tests/labs"]  # what runs inside an environment (the rest needs a host)


def frameworks_here() -> bool:
    return any(importlib.util.find_spec(m) for m in ("tensorflow", "torch", "jax"))


def image_run(
    run: Runner,
    variant: Variant,
    platform: str | None,
    command: list[str],
    options: list[str] | None = None,
) -> int:
    """`command` in the variant's image (its platform's build), with its GPUs where the engine
    has them; the exit code."""
    platform = variants.docker_platform(variant, platform)
    info = containers.check_engine(run)
    containers.check_image(variant, platform, run=run)
    gpus = containers.gpus_for(variant, info)
    cmd = containers.run_command(variant, command, gpus=gpus, options=options, platform=platform)
    return run(cmd, quiet=False).code


def within(run: Runner, variant_name: str | None, platform: str | None, command: list[str]) -> int:
    """`command` (a `python -m ...`) here, or in the variant's native environment or image."""
    if platform and variant_name is None:
        raise UserError("--platform names an image: use it with --variant (e.g. --variant cpu)")
    if variant_name is None:
        return run([sys.executable, *command[1:]], quiet=False).code
    variant = variants.get(variant_name)
    if variants.check_runtime(variant) == "native":
        return run(native.command(variant, command), quiet=False).code
    return image_run(run, variant, platform, command)


def test(run: Runner, variant: str | None, platform: str | None, extra: list[str]) -> int:
    """The host suite (image tests too, where an engine answers); with a variant, the device,
    training and lab tests inside its environment."""
    if variant is None:
        return within(run, None, platform, ["python", "-m", "pytest", *extra])
    if variants.check_runtime(variants.get(variant)) == "native":
        return within(run, variant, platform, ["python", "-m", "pytest", *SUITES, *extra])
    # The image's /opt/dllab is read-only to the lab user: no pytest cache there.
    command = ["python", "-m", "pytest", "-p", "no:cacheprovider", *SUITES, *extra]
    return image_run(run, variants.get(variant), platform, command, ["--workdir", "/opt/dllab"])


def doctor(run: Runner, variant: str | None, platform: str | None, flags: list[str]) -> int:
    """What each framework sees, here or in the variant's environment."""
    if variant is None and not frameworks_here():
        raise UserError(
            "no framework is installed here: they live in the image; ask it with "
            f"`{task_command('doctor', '--variant', 'cpu')}` (or install them here: pip install -e '.[cpu]')"
        )
    return within(run, variant, platform, ["python", "-m", "dllab", "doctor", *flags])


def bench(
    run: Runner, variant: str | None, out: str, flags: list[str], environment: bool = False
) -> int:
    """Each framework's speed on this device, here or in the variant's environment; JSON + PNG
    in `out`; with `environment`, also the image's size, rebuild and start-up figures."""
    if variant is None:
        if not frameworks_here():
            raise UserError(
                "no framework is installed here to measure: measure the image with "
                f"`{task_command('bench', '--variant', 'cpu')}` (or pip install -e '.[cpu]')"
            )
        return run([sys.executable, "-m", "dllab", "bench", *flags, "--out", out], quiet=False).code
    chosen = variants.get(variant)
    if variants.check_runtime(chosen) == "native":
        return run(native.command(chosen, ["python", "-m", "dllab", "bench", *flags, "--out", out]), quiet=False).code  # fmt: skip
    platform = variants.docker_platform(chosen, None)
    owner = Owner.current()
    folder = lab.work_path(out, "--out")
    if lab.check_work(folder, owner, "--out"):
        lab.make_work(run, folder, owner, "the bench writes its JSON and PNG here")
    options = [*containers.bind(folder, "/work/.bench"), "--env",
               f"DLLAB_LOCK_DIGEST={locks.digest(chosen, platform)}"]  # fmt: skip
    command = ["python", "-m", "dllab", "bench", *flags, "--out", "/work/.bench"]
    code = image_run(run, chosen, platform, command, options)
    if environment and not code:
        revision = images.revision(run)
        figures = ["-m", "dllab.envbench", "--variant", chosen.name, "--revision", revision]
        code = run([sys.executable, *figures], quiet=False).code
    return code
