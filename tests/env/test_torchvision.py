"""torchvision, for PyTorch's own tutorials: where the lock has it, it loads beside torch and runs."""

from __future__ import annotations

import importlib.util
import os
import tomllib
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"  # the repository's, or /opt/dllab's


def locked_torchvision() -> str | None:
    """The torchvision pin of this environment's variant on this machine, per pyproject.toml."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    variant = os.environ.get("DLLAB_VARIANT", "cpu")
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    environment = {**default_environment(), "extra": ""}
    for line in extras.get(variant, []):
        req = Requirement(line)
        if req.name == "torchvision" and (req.marker is None or req.marker.evaluate(environment)):
            return str(req.specifier).removeprefix("==")
    return None


def torch_device(accelerator: str) -> str:
    import torch

    if accelerator == "cuda" and not torch.cuda.is_available():
        pytest.skip(
            "no GPU visible to torch here: torchvision imported beside it, nms on CUDA not run"
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        pytest.skip("no MPS device visible to torch here")
    return accelerator


def test_torchvision_loads_beside_torch_and_runs_nms_on_the_variants_device(accelerator):
    """torchvision imports with this torch (a build for another torch fails: 'operator
    torchvision::nms does not exist') and its compiled nms keeps the right boxes on the device."""
    pinned = locked_torchvision()
    if pinned is None and importlib.util.find_spec("torchvision") is None:
        pytest.skip(
            f"the {os.environ.get('DLLAB_VARIANT', 'cpu')} lock has no torchvision for this "
            "machine (cpu on x86_64: its +cpu build is on PyTorch's CPU index only; "
            "locks/README.md says how to add it)"
        )
    import torch
    import torchvision

    if pinned:
        assert torchvision.__version__.split("+")[0] == pinned, torchvision.__version__
    device = torch_device(accelerator)
    boxes = torch.tensor(
        [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=torch.float32, device=device
    )
    scores = torch.tensor([0.9, 0.8, 0.7], device=device)
    kept = torchvision.ops.nms(boxes, scores, iou_threshold=0.5)
    assert kept.device.type == device
    assert kept.cpu().tolist() == [0, 2]
    image = torch.rand(3, 32, 32, device=device)
    flipped = torchvision.transforms.functional.hflip(image)
    assert torch.equal(flipped.flip(-1), image)
