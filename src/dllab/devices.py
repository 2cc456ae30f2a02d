"""What each framework sees, asked in a fresh process each, and the facts of this machine that explain it."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dllab import variants
from dllab.frameworks import TARGETS, TF_CPP_MIN_LOG_LEVEL, Target

NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")
# Seconds per probe or training step, each in a process of its own; DLLAB_PROBE_TIMEOUT raises it
# where CPUs are slow (an emulated arm64 image: importing TensorFlow alone takes minutes).
PROBE_TIMEOUT = float(os.environ.get("DLLAB_PROBE_TIMEOUT") or 300)


def run_child(target: Target, action: str, *args: str, timeout: float = PROBE_TIMEOUT) -> dict:
    """Run `python -m dllab.frameworks ACTION TARGET ...` and return its JSON result; never raises."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=TF_CPP_MIN_LOG_LEVEL)
    if target.backend:
        env["KERAS_BACKEND"] = target.backend  # read once, at `import keras`: hence a process each
    cmd = [sys.executable, "-m", "dllab.frameworks", action, target.name, *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"target": target.name, "error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("DLLAB-RESULT "):
            return json.loads(line.removeprefix("DLLAB-RESULT "))
    last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"target": target.name, "error": f"crashed (exit {proc.returncode}): {last}"}


def nvidia_driver() -> str | None:
    """The NVIDIA kernel driver version visible here (inside a container: only with --gpus)."""
    try:
        text = NVIDIA_DRIVER.read_text()
    except OSError:
        return None
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
