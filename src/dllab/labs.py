"""What every lab shares: fast mode, the runs folder, optional frameworks, reference solutions, timing."""

from __future__ import annotations

import importlib.util
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from dllab.progress import events
from dllab.variants import ROOT, VARIANTS

# DLLAB_FAST=1 (CI, tests): fewer samples and epochs, so each lab takes seconds; every check still runs.
FAST = os.environ.get("DLLAB_FAST") == "1"
# DLLAB_SOLUTIONS=1: every @exercise function is replaced by its reference solution.
SOLUTIONS = os.environ.get("DLLAB_SOLUTIONS") == "1"

SECTION_NAMES = {"tensorflow": "TensorFlow", "torch": "PyTorch", "keras": "Keras", "jax": "JAX"}


def pick(full, fast):
    """`fast` in fast mode, else `full`: `num_epochs = labs.pick(full=20, fast=2)`."""
    return fast if FAST else full


def digits(test_size: float = 0.2, seed: int = 0):
    """scikit-learn's handwritten digits (shipped with it: no download), split for training.

    Returns `X_train, X_test, y_train, y_test`: X float32 in [0, 1] with 64 pixels per row,
    y int64 labels 0-9. The split is stratified, so every digit is in both parts.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)  # pixels are 0..16; scaled inputs make SGD well behaved
    return train_test_split(
        X, y.astype(np.int64), test_size=test_size, random_state=seed, stratify=y
    )


def runs_dir(*parts: str) -> Path:
    """A folder for a lab's output under $DLLAB_RUNS (default `runs/` in the current directory), created."""
    path = Path(os.environ.get("DLLAB_RUNS", "runs")).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def lab_file(name: str) -> Path:
    """A file that ships with the labs, such as `keras_mlp.py` or `solutions/01_tensors_autodiff.py`.

    Looked up in the current directory first (Jupyter and nbclient start the kernel in the
    notebook's folder), then in the source checkout dllab was installed from.
    """
    for folder in (Path.cwd(), ROOT / "labs"):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"{name} not found in {Path.cwd()} or {ROOT / 'labs'}")


def require(module: str, section: str | None = None) -> bool:
    """True if `module` can be imported; otherwise say which variant ships it, and return False."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a half-imported module
        found = False
    if found:
        return True
    shipped = [v.name for v in VARIANTS.values() if module in v.frameworks]
    where = (
        f"it ships in the {' and '.join(shipped)} variant{'s' if len(shipped) > 1 else ''}"
        if shipped
        else "no dllab variant ships it"
    )
    print(
        f"{module} is not installed here: {where}; "
        f"skipping the {section or SECTION_NAMES.get(module, module)} section"
    )
    return False


def exercises(lab: str) -> Callable[[Callable], Callable]:
    """The `@exercise` decorator for one lab: with DLLAB_SOLUTIONS=1 it swaps in the reference solution.

    `lab` names the file in labs/solutions/ that holds the completed functions, e.g.
    "01_tensors_autodiff". Without DLLAB_SOLUTIONS the learner's function is used unchanged.
    """
    events.set_lab(lab)  # the checks' progress names this lab where the kernel knows no file
    solutions: list[ModuleType] = []  # loaded on first use: importing it may need every framework

    def exercise(fn: Callable) -> Callable:
        if not SOLUTIONS:
            return fn
        if not solutions:
            path = lab_file(f"solutions/{lab}.py")
            module = ModuleType(f"dllab_solutions_{lab}")
            module.__file__ = str(path)
            # exec, not import: the file name starts with a digit, and no __pycache__ is written
            exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
            solutions.append(module)
            print(f"DLLAB_SOLUTIONS=1: exercises use the reference solutions in {path}")
        return getattr(solutions[0], fn.__name__)

    return exercise


@dataclass(frozen=True)
class Timing:
    """Seconds per call, measured after warm-up: the median and the range of the repeats."""

    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def low(self) -> float:
        return min(self.seconds)

    @property
    def high(self) -> float:
        return max(self.seconds)

    def __str__(self) -> str:
        return (
            f"{_duration(self.median)} "
            f"({_duration(self.low)} to {_duration(self.high)}, n={len(self.seconds)})"
        )


def _duration(seconds: float) -> str:
    """3 significant digits in s, ms or µs, whichever keeps the number >= 1."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e6:.3g} µs"


def benchmark(fn: Callable[[], object], *, warmup: int = 3, repeat: int = 7) -> Timing:
    """Time `fn()`: `warmup` untimed calls (tracing, compiling, caches), then `repeat` timed calls.

    `fn` must wait for its result: `.numpy()`, `.item()`, or JAX's `.block_until_ready()`.
    """
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return Timing(tuple(seconds))
