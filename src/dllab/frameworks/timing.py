"""How every plugin's bench() times a step: first call, warm-up, then the median of repeats."""

from __future__ import annotations

import statistics
import time
import traceback
from collections.abc import Callable
from typing import Any

from dllab.frameworks.plugin import Matmul, Repeats, Settings, Timing


def measure(
    step: Callable[[], Any], sync: Callable[[Any], object], work: float, s: Repeats
) -> Timing:
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


def per_dtype(s: Settings, run: Callable[[str], Timing]) -> dict[str, Matmul]:
    """`run(dtype)` for each matmul dtype; one that fails is recorded with its error, the rest go on."""
    found: dict[str, Matmul] = {}
    for dtype in s["dtypes"]:
        try:
            found[dtype] = {"n": s["n"], **run(dtype)}
        except Exception as exc:  # e.g. bfloat16 on an older GPU: the other dtypes still count
            found[dtype] = {"error": traceback.format_exception_only(exc)[-1].strip()}
    return found
