"""Helpers shared by the test folders: skips that say what is missing."""

from __future__ import annotations

import importlib.util
import os

import pytest

REQUIRE = {p for p in os.environ.get("DLLAB_REQUIRE", "").split(",") if p}


def missing(what: str, reason: str) -> None:
    """Skip with `reason`, or fail where DLLAB_REQUIRE names `what` (in CI a skip would hide a gap)."""
    if what in REQUIRE:
        pytest.fail(f"{reason} (DLLAB_REQUIRE has {what})")
    pytest.skip(reason)


def require_frameworks() -> None:
    """Skip where no framework is installed here (a venv for the tasks only); fail in CI."""
    if not any(importlib.util.find_spec(m) for m in ("tensorflow", "torch")):
        missing(
            "native",
            "no framework installed here: `pip install -e '.[cpu]'`, "
            "or run these inside the image with `invoke test --variant cpu`",
        )
