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
    """Target, VARIANT and TORCH_INDEX match what `invoke build` passes; no PLATFORM is set."""
    build = config(variant.name)["build"]
    assert build["target"] == variant.name
    assert build["args"]["VARIANT"] == variant.name
    assert build["args"]["TORCH_INDEX"] == variant.torch_index
    # VS Code on an Apple-silicon Mac must build the arm64 image with no setting to change.
    assert "PLATFORM" not in build["args"]


def test_without_platform_the_dockerfile_picks_the_lock_of_the_machine_it_builds_on():
    """PLATFORM defaults to empty and the lock stage reads linux-$(uname -m) instead, with plain
    shell (the legacy builder has no TARGETARCH); the lock it used stays in the venv."""
    text = (ROOT / "docker" / "Dockerfile").read_text()
    lock = text.split("FROM base AS lock\n", 1)[1].split("\nFROM ", 1)[0]
    venv = text.split("FROM base AS venv\n", 1)[1].split("\nFROM ", 1)[0]
    assert re.search(r'^ARG PLATFORM=""$', lock, re.M)
    assert not re.search(r"^ARG TARGET|\$\{?TARGET", text, re.M)
    assert "${VARIANT}-${PLATFORM:-linux-$(uname -m)}.txt" in lock
    assert "COPY locks/${VARIANT}-linux-*.txt /tmp/locks/" in lock
    assert "cp /tmp/lock.txt /opt/venv/dllab-lock.txt" in venv
    # Every Linux lock the glob copies is one a `uname -m` can name.
    for variant in variants.VARIANTS.values():
        if variant.dockerized:
            assert all(p.startswith("linux-") for p in variant.platforms)


def test_the_venv_is_cached_by_the_lock_content_not_by_how_it_was_picked():
    """The venv stage sees neither PLATFORM nor VARIANT (they would key its cache): it copies the
    picked lock by content, so `invoke build` and the devcontainer share its layers."""
    text = (ROOT / "docker" / "Dockerfile").read_text()
    venv = text.split("FROM base AS venv\n", 1)[1].split("\nFROM ", 1)[0]
    assert not re.search(r"^ARG (PLATFORM|VARIANT)", venv, re.M)
    assert "COPY --from=lock /dllab-lock.txt /tmp/lock.txt" in venv
