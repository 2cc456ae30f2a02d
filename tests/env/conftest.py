"""The accelerator this environment promises: what every framework here must use."""

from __future__ import annotations

import pytest

from dllab import devices, variants
from tests.support import require_frameworks


@pytest.fixture(scope="session", autouse=True)
def _frameworks_here():
    """Skip the folder where no framework is installed (a dev venv for tasks only)."""
    require_frameworks()


@pytest.fixture(scope="session")
def accelerator() -> str:
    """$DLLAB_ACCELERATOR (set by each image and native environment), else cpu."""
    return variants.expected_accelerator() or "cpu"


@pytest.fixture(scope="session")
def report() -> list[dict]:
    return devices.probe_all()
