"""The arm64 cpu image (Apple-silicon Docker, arm64 servers): built for arm64, from the aarch64
lock, and every framework trains in it. Native on an arm64 host; on x86_64 it runs under qemu
emulation (about a quarter of an hour), so there only with DLLAB_ARM64=1, as .ci/arm64 sets."""

from __future__ import annotations

import json
import os

import pytest

from dllab import containers, locks, variants
from tests.support import missing

PLATFORM = "linux-aarch64"
CPU = variants.get("cpu")
EMULATED = variants.engine_platform() != PLATFORM
# Emulated, importing TensorFlow alone takes minutes on 2 busy cores.
TIMEOUT = 3600 if EMULATED else 900
DOCTOR = ["doctor", "--expect", "cpu", "--train", "--json"]
# doctor gives each framework's probe and training step a process of its own with a 300 s limit,
# sized for real CPUs; emulated, six processes importing TensorFlow at once can pass it.
EMULATED_LIMIT = {"DLLAB_PROBE_TIMEOUT": "1800"}


@pytest.fixture(scope="module")
def arm64_image(client):
    """dllab:cpu on an arm64 host, dllab:cpu-linux-aarch64 elsewhere (`invoke build --platform`)."""
    import docker

    if EMULATED and not os.environ.get("DLLAB_ARM64"):
        missing(
            "image-cpu-arm64",
            "the arm64 image runs emulated on this machine (5 to 15 min): "
            "set DLLAB_ARM64=1 (.ci/arm64 does)",
        )
    tag = containers.image_tag(CPU, PLATFORM)
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        missing(
            "image-cpu-arm64",
            f"no {tag} image: run `invoke build --variant cpu --platform {PLATFORM}` (or .ci/arm64)",
        )
    return tag


def run(containers_, image: str, command: list[str], **kwargs) -> tuple[int, str]:
    """Run `command` in the arm64 image to its end: (exit code, its stdout; stderr on failure)."""
    if EMULATED:  # a quarter of a default container's CPU weight: the rest of CI goes first
        kwargs.setdefault("cpu_shares", 256)
    container = containers_.run(
        image, command, platform="linux/arm64", network_mode="none", **kwargs
    )
    code = container.wait(timeout=TIMEOUT)["StatusCode"]
    out = container.logs(stdout=True, stderr=False).decode()
    if code:
        out += "\n--- stderr\n" + container.logs(stdout=False, stderr=True).decode()[-4000:]
    return code, out


def test_the_image_is_arm64_and_its_python_runs_on_aarch64(client, containers, arm64_image):
    """The image is marked arm64, and what runs in it is an aarch64 machine."""
    assert client.images.get(arm64_image).attrs["Architecture"] == "arm64"
    code, out = run(
        containers, arm64_image, ["python", "-c", "import platform; print(platform.machine())"]
    )
    assert code == 0, out
    assert out.strip().splitlines()[-1] == "aarch64"


def test_labels_and_venv_name_the_aarch64_lock(client, containers, arm64_image):
    """The lock-digest label is the aarch64 lock's, and the venv was installed from that lock."""
    expected = locks.digest(CPU, PLATFORM)
    labels = client.images.get(arm64_image).labels
    assert labels["dllab.lock-digest"] == expected
    assert labels["dllab.variant"] == "cpu"
    code, out = run(containers, arm64_image, ["cat", "/opt/venv/dllab-lock.txt"])
    assert code == 0, out
    assert locks.recorded(out, locks.DIGEST_PREFIX) == expected


def test_doctor_trains_every_framework_the_lock_promises(containers, arm64_image):
    """`dllab doctor --expect cpu --train` passes: each framework and Keras backend trains on the
    CPU, with the versions the aarch64 lock pins (torch 2.9.1 there; see locks/README.md)."""
    env = EMULATED_LIMIT if EMULATED else {}
    code, out = run(containers, arm64_image, ["python", "-m", "dllab", *DOCTOR], environment=env)
    assert code == 0, out[-6000:]
    report, _ = json.JSONDecoder().raw_decode(out[out.index("{") :])
    for r in report["frameworks"]:  # shown with -s, as .ci/arm64 runs it
        failures = r.get("train", {}).get("failures")
        print(f"  {r['target']:<18} {r.get('version', '-'):<12} trained: {failures == []}")
    assert code == 0 and report["problems"] == [], out[-4000:]
    assert report["system"]["platform"] == PLATFORM
    trained = {
        r["target"] for r in report["frameworks"] if r.get("train", {}).get("failures") == []
    }
    for framework in CPU.frameworks:
        if framework == "keras":
            assert {"keras-tensorflow", "keras-torch", "keras-jax"} <= trained, trained
        else:
            assert framework in trained, trained
    pins = locks.pins(CPU.lock(PLATFORM))
    versions = {r["target"]: r.get("version") for r in report["frameworks"]}
    # PyPI's aarch64 CPU wheel says 2.9.1+cpu of itself; the lock pins the wheel's 2.9.1.
    assert versions["torch"].split("+")[0] == pins["torch"].split("+")[0]
    assert versions["tensorflow"] == pins["tensorflow"]


def test_a_lab_runs_in_fast_mode_with_every_check_correct(containers, arm64_image):
    """Lab 01 (tensors and autodiff in TF, torch and JAX), solved, in fast mode: all correct."""
    script = (
        "import pathlib, sys, tempfile\n"
        "from tests.labs.test_lab_notebooks import LABS_DIR, lab_env, run_lab\n"
        "runs = pathlib.Path(tempfile.mkdtemp())\n"
        "text, error = run_lab(LABS_DIR / '01_tensors_autodiff.py', lab_env(runs, True))\n"
        "print(text)\n"
        "sys.exit(f'lab error: {error}' if error else 0)\n"
    )
    code, out = run(containers, arm64_image, ["python", "-c", script], working_dir="/opt/dllab")
    assert code == 0, out[-4000:]
    assert "correct: " in out and "not yet" not in out, out[-4000:]
