"""A variant's native environment (metal on a Mac; cpu or cuda natively where they have a lock):
conda/mamba from its conda file where one is installed, else a venv from the hashed lock."""

from __future__ import annotations

import shutil
import sys

from dllab import variants
from dllab.runner import Runner
from dllab.variants import Variant

EDITABLE = ["pip", "install", "--no-deps", "--no-build-isolation", "-e", "."]


def conda() -> str | None:
    """mamba or conda, where one is installed."""
    return next((tool for tool in ("mamba", "conda") if shutil.which(tool)), None)


def env_name(variant: Variant) -> str:
    return f"dllab-{variant.name}"


def build(run: Runner, variant: Variant) -> None:
    """Make (or update) the environment, with dllab installed editable."""
    tool = conda()
    if tool and variant.conda_file:
        name = env_name(variant)
        run.checked([tool, "env", "update", "--name", name, "--file", variant.conda_file, "--prune"], quiet=False)  # fmt: skip
        run.checked([tool, "run", "--name", name, *EDITABLE], quiet=False)
        return
    venv = f".venv-{variant.name}"
    lock = str(variant.lock(variants.host_platform()))
    run.checked([sys.executable, "-m", "venv", venv], quiet=False)
    run.checked([f"{venv}/bin/pip", "install", "--require-hashes", "--no-deps", "-r", lock], quiet=False)  # fmt: skip
    run.checked([f"{venv}/bin/pip", *EDITABLE[1:]], quiet=False)


def command(variant: Variant, cmd: list[str]) -> list[str]:
    """`cmd` run in the variant's native environment, with the variables it promises."""
    tool = conda()
    if tool and variant.conda_file:
        return [tool, "run", "--no-capture-output", "--name", env_name(variant), *cmd]
    promised = (
        ("DLLAB_VARIANT", variant.name),
        ("DLLAB_ACCELERATOR", variant.accelerator),
        *variant.env,
    )
    program, *args = cmd
    return ["env", *(f"{k}={v}" for k, v in promised), f".venv-{variant.name}/bin/{program}", *args]


def lab_command(variant: Variant, port: int) -> list[str]:
    """JupyterLab natively, on localhost with a token (Jupyter's own), opening the labs."""
    return command(
        variant,
        [
            "jupyter", "lab", "--ServerApp.root_dir=.", f"--port={port}",
            "--LabApp.default_url=/lab/tree/labs/README.md",
        ],
    )  # fmt: skip
