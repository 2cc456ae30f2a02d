"""How every plugin's bench() starts and times a step: first call, warm-up, then the median of repeats."""

from __future__ import annotations

import importlib
import json
import statistics
import time
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any

from dllab.frameworks.plugin import Matmul, Rate, Repeats, Settings


def begin(
    framework: str, settings: str, deterministic: Callable[[], None]
) -> tuple[ModuleType, float, Settings]:
    """Every bench()'s start: (the framework imported, seconds the import took, the settings).

    The determinism switches, if asked for, go on before anything runs.
    """
    start = time.perf_counter()
    module = importlib.import_module(framework)
    import_s = time.perf_counter() - start
    s: Settings = json.loads(settings)
    if s.get("deterministic"):
        deterministic()
    return module, import_s, s


def measure(
    step: Callable[[], Any], sync: Callable[[Any], object], work: float, s: Repeats
) -> Rate:
    """Time `step()`: its first call, then after warm-up the median rate of `work` per second."""
    start = time.perf_counter()
    sync(step())
    first = time.perf_counter() - start
    start = time.perf_counter()
    out = None
    for _ in range(s["warmup"]):
        out = step()
    sync(out)
    # Enough calls per repeat to fill repeat_s, so that a fast step is not lost in timer noise.
    calls = max(1, round(s["repeat_s"] * s["warmup"] / (time.perf_counter() - start)))
    rates = []
    for _ in range(s["repeats"]):
        start = time.perf_counter()
        for _ in range(calls):
            out = step()
        sync(out)  # devices run asynchronously: wait for the last call before stopping the clock
        rates.append(work * calls / (time.perf_counter() - start))
    median = statistics.median(rates)
    return {
        "median": median,
        "min": min(rates),
        "max": max(rates),
        "first_s": first,
        "steady_s": work / median,
        "calls_per_repeat": calls,
    }


def per_dtype(s: Settings, run: Callable[[str], Rate]) -> dict[str, Matmul]:
    """`run(dtype)` for each matmul dtype; one that fails is recorded with its error, the rest go on."""
    found: dict[str, Matmul] = {}
    for dtype in s["dtypes"]:
        try:
            found[dtype] = {"n": s["n"], **run(dtype)}
        except Exception as exc:  # e.g. bfloat16 on an older GPU: the other dtypes still count
            found[dtype] = {"error": traceback.format_exception_only(exc)[-1].strip()}
    return found
