"""The frameworks dllab checks: the targets, and what every plugin module shares.

The ground floor of dllab: nothing here imports the rest of it. Each framework is a plugin
module beside this one (tensorflow.py, torch.py, jax.py, keras.py) with the same three
functions, probe(), train(accelerator) and bench(accelerator, settings), as `plugin.Plugin`
types them; `python -m dllab.frameworks` runs one of them in a fresh process, and
`timing.py` is how their bench() measures.
"""

from __future__ import annotations

import importlib.util
import platform
from dataclasses import dataclass

import numpy as np

KERAS_BACKENDS = ("tensorflow", "torch", "jax")
# TF's C++ log level in every child process: 2 keeps its start-up INFO and WARNING lines out of reports.
TF_CPP_MIN_LOG_LEVEL = "2"


@dataclass(frozen=True)
class Target:
    """A framework, or Keras on one backend (each needs a fresh process)."""

    framework: str
    backend: str | None = None

    @property
    def name(self) -> str:
        return f"keras[{self.backend}]" if self.backend else self.framework

    @property
    def needs(self) -> tuple[str, ...]:
        """The top-level packages that must be importable."""
        return ("keras", self.backend) if self.backend else (self.framework,)

    def installed(self) -> bool:
        return all(importlib.util.find_spec(module) for module in self.needs)

    @classmethod
    def parse(cls, name: str) -> Target:
        """`torch` -> Target('torch'); `keras[jax]` -> Target('keras', 'jax')."""
        if name.startswith("keras[") and name.endswith("]"):
            return cls("keras", name[6:-1])
        return cls(name)


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
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, features)).astype(np.float32)
    w = rng.normal(size=(features,)).astype(np.float32)
    y = (X @ w > 0).astype(np.int64)
    return X, y


STEPS = 20
LR = 0.5
HIDDEN = 32
