"""In whatever environment runs it: every framework sees, and trains on, the promised device."""

from __future__ import annotations

import os
import platform

import pytest

from dllab import devices, doctor, smoke, variants
from dllab.frameworks import TARGETS, Target


def test_every_installed_framework_sees_the_promised_accelerator(report, accelerator):
    """doctor's verdict for this environment's accelerator has no problem."""
    facts = devices.system()
    assert doctor.problems(report, accelerator, facts) == []


def test_the_core_frameworks_are_installed(report):
    """TensorFlow, PyTorch and Keras are in every environment (JAX only in some)."""
    installed = {r["target"] for r in report if r["installed"]}
    assert {"tensorflow", "torch", "keras-tensorflow", "keras-torch"} <= installed


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_a_real_training_step_runs_on_the_promised_device(target: Target, accelerator):
    """A few SGD steps on local data: loss falls, weights change, tensors on the accelerator."""
    if not target.installed():
        variant = os.environ.get("DLLAB_VARIANT")
        if variant in variants.VARIANTS and all(
            m in variants.VARIANTS[variant].frameworks for m in target.needs
        ):
            pytest.fail(f"{target.name} is not installed, but the {variant} variant promises it")
        pytest.skip(f"{target.name} is not installed here")
    result = smoke.train(target, accelerator)
    assert result["failures"] == [], result
    assert result["device_kind"] == accelerator


@pytest.mark.cuda
def test_with_an_nvidia_driver_torch_and_tensorflow_see_every_gpu(report):
    """Where a driver is visible, torch and TF list the same GPUs (none silently missing)."""
    if not devices.nvidia_driver():
        pytest.skip("no NVIDIA driver visible (/proc/driver/nvidia/version): no GPU here")
    gpus = {
        r["target"]: [d for d in r["devices"] if d["kind"] == "cuda"]
        for r in report
        if r["installed"] and not r.get("error")
    }
    assert gpus["torch"], "torch sees no GPU although a driver is visible"
    assert len(gpus["tensorflow"]) == len(gpus["torch"])


@pytest.mark.metal
def test_on_apple_silicon_torch_and_tensorflow_see_the_gpu(report):
    """On macOS arm64, torch has MPS and TF a Metal GPU."""
    if variants.host_platform() != "macos-arm64":
        pytest.skip(f"not macOS on Apple silicon ({platform.system()} {platform.machine()})")
    kinds = {r["target"]: {d["kind"] for d in r["devices"]} for r in report if r["installed"]}
    assert "mps" in kinds["torch"] and "mps" in kinds["tensorflow"]
