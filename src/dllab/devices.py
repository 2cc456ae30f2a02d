"""What each framework sees, asked in a fresh process each, and what to do when it is not the promise."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dllab import variants
from dllab.frameworks import TARGETS, Target

NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")
PROBE_TIMEOUT = 300


def run_child(target: Target, action: str, *args: str, timeout: float = PROBE_TIMEOUT) -> dict:
    """Run `python -m dllab.frameworks ACTION TARGET ...` and return its JSON result; never raises."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
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


def problems(results: list[dict], expect: str, facts: dict) -> list[str]:
    """One line per target that does not see `expect`, each with how to fix it."""
    promised = (
        variants.VARIANTS[facts["variant"]].frameworks
        if facts.get("variant") in variants.VARIANTS
        else ()
    )
    found = []
    for r in results:
        name = r["target"]
        target = Target.parse(name)
        if not r.get("installed"):
            if all(m in promised for m in target.needs):
                found.append(
                    f"{name}: not installed, but the {facts['variant']} variant promises it: "
                    f"rebuild it (invoke build --variant {facts['variant']})"
                )
            continue
        if r.get("error"):
            found.append(f"{name}: {r['error']}")
            continue
        kinds = {d["kind"] for d in r["devices"]}
        if target.backend:  # Keras must put its tensors there, not merely be able to
            kinds = {r["devices"][0]["kind"]}
        if expect not in kinds:
            found.append(
                f"{name} sees no {expect} (only {', '.join(sorted(kinds))}): "
                + hint(r, expect, facts)
            )
    return found


def hint(result: dict, expect: str, facts: dict) -> str:
    """How to make the target in `result` see `expect`."""
    target = Target.parse(result["target"])
    build = result.get("build", {})
    framework = target.backend or target.framework
    if target.backend:
        return f"Keras uses {framework}'s devices: fix {framework} first (python -m dllab doctor)"
    if expect == "cuda":
        cuda_build = build.get("cuda") or (framework == "jax" and build.get("backend") == "gpu")
        if not cuda_build:
            return f"{framework} is a CPU-only build: use the cuda variant (invoke build --variant cuda)"
        if not facts.get("nvidia_driver"):
            return (
                "CUDA build but no NVIDIA driver visible: run the container with --gpus all "
                "(invoke lab --variant cuda does) and install the NVIDIA Container Toolkit on the host"
            )
        return (
            f"NVIDIA driver {facts['nvidia_driver']} is visible but {framework} sees no GPU: "
            "torch's CUDA 13 build needs driver >= 580, TF's CUDA 12 build >= 525; "
            "check nvidia-smi and CUDA_VISIBLE_DEVICES"
        )
    if expect == "mps":
        if not facts.get("platform", "").startswith("macos-arm64"):
            return f"mps exists only on macOS with Apple silicon (this is {facts.get('platform')}): expect cpu or cuda"
        if framework == "tensorflow":
            if not build.get("metal_plugin"):
                return "tensorflow-metal is not installed: create the metal environment (environment.yml)"
            return (
                f"tensorflow-metal {build['metal_plugin']} did not load: it needs tensorflow 2.18.x "
                "(as pinned in environment.yml)"
            )
        if framework == "torch":
            return "torch sees no MPS: it needs macOS >= 14 and an arm64 Python (not one under Rosetta)"
        return f"{framework} has no Metal backend in dllab: the metal variant does not ship it"
    return f"{framework} sees no CPU, which should not happen: reinstall it"
