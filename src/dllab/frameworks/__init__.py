"""The frameworks dllab checks: the targets, and what every plugin module shares.

The ground floor of dllab: nothing here imports the rest of it, and this file needs only the
standard library (workers.py imports it on a host without NumPy). Each framework is a plugin
module beside this one (tensorflow.py, torch.py, jax.py, keras.py) with the same four
functions, probe(), train(accelerator), bench(accelerator, settings) and deterministic(), as
`plugin.Plugin` types them; `python -m dllab.frameworks` runs one of them in a fresh process,
and `timing.py` is how their bench() measures.
"""

from __future__ import annotations

import importlib.util
import platform
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

KERAS_BACKENDS = ("tensorflow", "torch", "jax")
# The last line a child process prints (a probe, a training step, a worker): RESULT + one JSON.
RESULT = "DLLAB_RESULT "
# The targets `invoke train` runs data-parallel, each with its own engine (train_worker.py).
FRAMEWORKS = ("torch", "tensorflow", "keras-jax")
# TF's C++ log level in every child process: 2 keeps its start-up INFO and WARNING lines out of reports.
TF_CPP_MIN_LOG_LEVEL = "2"


@dataclass(frozen=True)
class Target:
    """A framework, or Keras on one backend (each needs a fresh process)."""

    framework: str
    backend: str | None = None

    @property
    def name(self) -> str:
        # keras-jax, not keras[jax]: zsh reads [...] as a glob, and Docker names refuse brackets.
        return f"keras-{self.backend}" if self.backend else self.framework

    @property
    def needs(self) -> tuple[str, ...]:
        """The top-level packages that must be importable."""
        return ("keras", self.backend) if self.backend else (self.framework,)

    def installed(self) -> bool:
        return all(importlib.util.find_spec(module) for module in self.needs)

    @classmethod
    def parse(cls, name: str) -> Target:
        """`torch` -> Target('torch'); `keras-jax` -> Target('keras', 'jax')."""
        framework, _, backend = name.partition("-")
        return cls(framework, backend or None)


TARGETS = (
    Target("tensorflow"),
    Target("torch"),
    Target("jax"),
    *(Target("keras", backend) for backend in KERAS_BACKENDS),
)


def device_kind(name: str) -> str:
    """The accelerator a device name means: '/device:GPU:0', 'cuda:0', 'METAL', 'gpu' ... -> cpu|cuda|mps."""
    low = name.lower()
    if "mps" in low or "metal" in low:
        return "mps"
    if "gpu" in low or "cuda" in low:
        # On macOS the only GPU a framework can see is Apple's, through Metal.
        return "mps" if platform.system() == "Darwin" else "cuda"
    return "cpu"


def toy_data(n: int = 256, features: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small, learnable two-class problem made locally: X (n, features) float32, y (n,) int64."""
    import numpy as np  # here, not at the top: see the module's docstring

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, features)).astype(np.float32)
    w = rng.normal(size=(features,)).astype(np.float32)
    y = (X @ w > 0).astype(np.int64)
    return X, y


def fan_in_scale(shape: tuple[int, ...]) -> float:
    """1/sqrt(fan-in) of a weight of `shape` (its last axis is the output): the usual init scale."""
    fan_in = 1
    for size in shape[:-1]:
        fan_in *= size
    return fan_in**-0.5


def dense(relu, params: list, X):
    """An MLP's logits in any array library: relu(X @ W + b) for each [W, b] but the last, then X @ W + b."""
    pairs = list(zip(params[0::2], params[1::2], strict=True))
    for w, b in pairs[:-1]:
        X = relu(X @ w + b)
    w, b = pairs[-1]
    return X @ w + b


STEPS = 20
LR = 0.5
HIDDEN = 32
