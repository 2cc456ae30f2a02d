"""What each framework sees, asked in a fresh process each, and the facts of this machine that explain it."""

from __future__ import annotations

import json
import os
import platform
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dllab import gpus, variants
from dllab.frameworks import RESULT, TARGETS, TF_CPP_MIN_LOG_LEVEL, Target
from dllab.runner import Runner

NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")
# Seconds per probe or training step, each in a process of its own; DLLAB_PROBE_TIMEOUT raises it
# where CPUs are slow (an emulated arm64 image: importing TensorFlow alone takes minutes).
PROBE_TIMEOUT = float(os.environ.get("DLLAB_PROBE_TIMEOUT") or 300)


# Frameworks share one GPU: without these, JAX takes 75 % of its memory at start and TF all of
# it, so a second framework probed beside it finds none. The CUDA image sets them too; a user's
# own setting wins.
SHARE_GPU = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}


def child_env(target: Target, environ: dict[str, str]) -> dict[str, str]:
    """The environment of a child process for `target`."""
    env = {**SHARE_GPU, **environ, "TF_CPP_MIN_LOG_LEVEL": TF_CPP_MIN_LOG_LEVEL}
    if target.backend:
        env["KERAS_BACKEND"] = target.backend  # read once, at `import keras`: hence a process each
    return env


def run_child(target: Target, action: str, *args: str, timeout: float = PROBE_TIMEOUT) -> dict:
    """Run `python -m dllab.frameworks ACTION TARGET ...` and return its JSON result; never raises."""
    env = child_env(target, dict(os.environ))
    cmd = [sys.executable, "-m", "dllab.frameworks", action, target.name, *args]
    done = Runner()(cmd, env=env, timeout=timeout)
    for line in reversed(done.out.splitlines()):
        if line.startswith(RESULT):
            return json.loads(line.removeprefix(RESULT))
    if done.code == 124 and done.err.startswith("timed out"):
        return {"target": target.name, "error": done.err}
    last = (done.err.strip().splitlines() or ["no output"])[-1]
    return {"target": target.name, "error": f"crashed (exit {done.code}): {last}"}


def nvidia_smi(*args: str, run: Runner | None = None) -> str | None:
    """nvidia-smi's output for `args`, or None where it is missing or fails (no driver, no GPU)."""
    done = (run or Runner())(["nvidia-smi", *args], timeout=30)
    return done.out if done.ok else None


def gpu_table(run: Runner | None = None) -> str:
    """nvidia-smi's list of GPUs in the CSV that gpus.parse() reads; empty where there is none."""
    return nvidia_smi(f"--query-gpu={gpus.QUERY}", "--format=csv,noheader", run=run) or ""


def gpu_list(run: Runner | None = None) -> list[gpus.Gpu]:
    """The GPUs the NVIDIA driver shows here (inside a container: those given with --gpus)."""
    return gpus.parse(gpu_table(run))


def cpu_count() -> int:
    """The CPUs this process may run on (a container's --cpuset-cpus included)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def nvidia_driver(run: Runner | None = None) -> str | None:
    """The NVIDIA kernel driver version visible here (inside a container: only with --gpus).

    From /proc/driver/nvidia/version, else from nvidia-smi: some sandboxes (gVisor) show the
    GPU and nvidia-smi but not that file.
    """
    try:
        text = NVIDIA_DRIVER.read_text()
    except OSError:
        versions = (
            nvidia_smi("--query-gpu=driver_version", "--format=csv,noheader", run=run) or ""
        ).split()
        return versions[0] if versions else None  # one line per GPU, all the same driver
    for word in text.split():
        if word.count(".") >= 1 and word.replace(".", "").isdigit():
            return word
    return text.strip().splitlines()[0]


def system() -> dict:
    """Facts about this machine and environment that explain what the frameworks see."""
    return {
        "platform": variants.host_platform(),
        "python": platform.python_version(),
        "variant": os.environ.get("DLLAB_VARIANT"),
        "accelerator": variants.expected_accelerator(),
        "in_container": Path("/.dockerenv").exists(),
        "nvidia_driver": nvidia_driver(),
    }


def probe_all(targets: tuple[Target, ...] = TARGETS) -> list[dict]:
    """Probe every target in parallel, each in a fresh process; a missing one says what is missing."""
    installed = [t for t in targets if t.installed()]
    with ThreadPoolExecutor(max_workers=max(1, len(installed))) as pool:
        found = dict(
            zip(installed, pool.map(lambda t: run_child(t, "probe"), installed), strict=True)
        )
    return [
        {"installed": True, **found[t]}
        if t in found
        else {
            "target": t.name,
            "installed": False,
            "error": f"not installed: no {' or '.join(t.needs)}",
        }
        for t in targets
    ]
