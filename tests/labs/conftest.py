"""Lab tests record their checks' progress in a folder of their own, never in the checkout's work/."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def private_progress_log(monkeypatch, tmp_path):
    monkeypatch.setenv("DLLAB_WORK", str(tmp_path / "work"))
