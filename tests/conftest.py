"""Shared fixtures: the repository root, and skips that state what is missing."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from dllab.variants import ROOT

REQUIRE = {p for p in os.environ.get("DLLAB_REQUIRE", "").split(",") if p}


def missing(what: str, reason: str) -> None:
    """Skip with `reason`, or fail where DLLAB_REQUIRE names `what` (CI: a skip would hide a gap)."""
    if what in REQUIRE:
        pytest.fail(f"{reason} (DLLAB_REQUIRE={what})")
    pytest.skip(reason)


def engine_answers() -> bool:
    return bool(shutil.which("docker")) and (
        subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    )


@pytest.fixture(scope="session")
def root():
    return ROOT
