"""The devcontainer configs derive from the registry: one per Docker variant, same build args."""

from __future__ import annotations

import json
import re

import pytest

from dllab import variants
from dllab.variants import ROOT


def config(variant: str) -> dict:
    folder = ROOT / ".devcontainer" / ("" if variant == "cpu" else variant)
    text = (folder / "devcontainer.json").read_text()
    return json.loads(re.sub(r"^\s*//.*$", "", text, flags=re.M))


@pytest.mark.parametrize(
    "variant", [v for v in variants.VARIANTS.values() if v.dockerized], ids=lambda v: v.name
)
def test_devcontainer_builds_the_variant_stage_with_the_registry_args(variant):
    """Target, VARIANT, PLATFORM and TORCH_INDEX match what `invoke build` passes."""
    build = config(variant.name)["build"]
    assert build["target"] == variant.name
    assert build["args"]["VARIANT"] == variant.name
    assert build["args"]["PLATFORM"] == variant.platforms[0]
    assert build["args"]["TORCH_INDEX"] == variant.torch_index


def test_devcontainers_run_as_the_non_root_lab_user_with_jupyter_forwarded():
    """Both configs use the lab user (UID updated), forward 8888 and install dllab editable."""
    for name in ("cpu", "cuda"):
        c = config(name)
        assert c["remoteUser"] == "lab" and c["updateRemoteUserUID"] is True
        assert 8888 in c["forwardPorts"] and "-e ." in c["postCreateCommand"]
        assert {"ms-python.python", "ms-toolsai.jupyter"} <= set(
            c["customizations"]["vscode"]["extensions"]
        )


def test_the_cuda_devcontainer_opens_without_a_gpu():
    """hostRequirements.gpu is optional, so machines without a GPU can still open it."""
    assert config("cuda")["hostRequirements"]["gpu"] == "optional"
