# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · One Keras model, every backend
#
# Keras 3 is an API, not an engine: layers, models, losses and `fit()` are written once against
# `keras.ops`, and a **backend** (TensorFlow, PyTorch or JAX) does the arithmetic. The same
# model file runs on all three.
#
# The backend is chosen **once, when `keras` is first imported**, from the `KERAS_BACKEND`
# environment variable (else from `~/.keras/keras.json`, else TensorFlow). Setting the variable
# afterwards changes nothing in a running process, so to compare backends we start one Python
# process per backend, each running the same script on the same data.

# %%
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's C++ start-up log lines

import keras
import numpy as np

from dllab import check, labs
from dllab.frameworks import KERAS_BACKENDS

exercise = labs.exercises("03_keras_backends")
num_epochs = labs.pick(full=20, fast=3)
print("this kernel's Keras backend:", keras.backend.backend())

# %% [markdown]
# ## The script
#
# `keras_mlp.py`, next to this notebook, trains a small multi-layer perceptron on
# scikit-learn's handwritten digits (8×8 pixel images, 10 classes; shipped with scikit-learn,
# so nothing is downloaded) and prints its results as one line of JSON. Nothing in it names a
# backend:

# %%
script = labs.lab_file("keras_mlp.py")
print(script.read_text())

# %% [markdown]
# ## Run it once per backend
#
# Each run gets a copy of this process's environment with `KERAS_BACKEND` set. The runs are
# independent, so they go in parallel; that makes their timings meaningless (they share the
# CPU), which is fine: this lab compares *accuracy*. Lab 06 measures speed, one run at a time.


# %%
def run_backend(backend):
    """Run keras_mlp.py with Keras on `backend`; its JSON result, or the error it printed."""
    env = dict(os.environ, KERAS_BACKEND=backend)
    proc = subprocess.run(
        [sys.executable, str(script), "--epochs", str(num_epochs)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        return {"backend": backend, "error": proc.stderr.strip().splitlines()[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


backends = [b for b in KERAS_BACKENDS if labs.require(b, section=f"Keras on {b}")]
with ThreadPoolExecutor(max_workers=len(backends)) as pool:
    results = list(pool.map(run_backend, backends))

for r in results:
    print(f"{r['backend']:11}", r.get("error") or f"test accuracy {r['accuracy']:.3f}")

# %% [markdown]
# ## Same model, comparable results
#
# The accuracies are close but rarely identical. `keras.utils.set_random_seed(0)` seeds each
# backend's own random number generator, and they produce different initial weights from the
# same seed; float32 sums also round differently. Expect agreement within a couple of percent,
# not bit for bit.
#
# One backend run twice is another matter: with the same seed it gives the same bits when every
# kernel it runs is deterministic. On a CPU these models already are. dllab's own training
# steps (`python -m dllab doctor --train`, `invoke train`) also switch each framework's
# determinism on, as you would on a GPU: `torch.use_deterministic_algorithms(True)` (with
# `CUBLAS_WORKSPACE_CONFIG=:4096:8`), `tf.config.experimental.enable_op_determinism()`, and
# `XLA_FLAGS=--xla_gpu_deterministic_ops=true` for JAX. The price is speed: on an H200 GPU,
# torch's small MLP and CNN trained 40-50 % slower with it (BENCHMARKS.md). On a CPU the
# kernels these models use were deterministic already, and the cost is small enough to be lost
# in a busy machine's noise. Measure yours: `python -m dllab bench --deterministic`, then the
# same without the flag.

# %%
accuracies = {r["backend"]: r["accuracy"] for r in results if "accuracy" in r}
check.equal("every backend trained", sorted(accuracies), sorted(backends))
check.that(
    "every backend learned the digits",
    lambda: min(accuracies.values()) > labs.pick(full=0.9, fast=0.8),
    hint="a backend's accuracy is low: look at its error above",
)
check.that(
    "backends agree within 5 percentage points",
    lambda: max(accuracies.values()) - min(accuracies.values()) < 0.05,
    hint="one backend trains differently: run keras_mlp.py with KERAS_BACKEND set and compare",
)

# %% [markdown]
# Also compare the `jit_compile` column: by default Keras compiles the training step with XLA on
# JAX and may do so on TensorFlow, but runs PyTorch eagerly (`jit_compile=True` in `compile()`
# asks for `torch.compile`).

# %%
for r in results:
    if "accuracy" in r:
        print(f"{r['backend']:11} jit_compile={r['jit_compile']}")

# %% [markdown]
# ## Exercises
#
# **1.** `keras.ops` is the backend-agnostic math library. Write `stable_softmax(logits)` for a
# 1-D tensor with `keras.ops` only (`exp`, `max`, `sum`, ...). Naively, `exp(1000)` overflows
# to infinity and the result is NaN; subtracting the maximum first changes nothing
# mathematically and keeps every exponent ≤ 0.


# %%
@exercise
def stable_softmax(logits):
    """softmax(logits) = exp(logits) / sum(exp(logits)), without overflow, using keras.ops."""
    raise NotImplementedError


# %%
small = np.array([1.0, 2.0, 3.0], dtype=np.float32)
large = np.array([1000.0, 1001.0, 1002.0], dtype=np.float32)
expected = np.exp(small - 3) / np.exp(small - 3).sum()
check.close(
    "softmax of small logits",
    lambda: keras.ops.convert_to_numpy(stable_softmax(small)),
    expected,
    atol=1e-6,
)
check.close(
    "softmax of large logits (no overflow)",
    lambda: keras.ops.convert_to_numpy(stable_softmax(large)),
    expected,
    atol=1e-6,
    hint="subtract keras.ops.max(logits) before keras.ops.exp",
)

# %% [markdown]
# **2.** Write `build_net(num_features, num_classes, hidden)` with Keras's **functional API**
# (`keras.Input`, layers called on tensors, `keras.Model(inputs, outputs)`): the same
# architecture as the one `keras_mlp.py` trains, `dllab.frameworks.keras.mlp` (two
# `hidden`-wide ReLU layers, then `num_classes` logits).


# %%
@exercise
def build_net(num_features, num_classes, hidden):
    """An MLP: num_features -> hidden (ReLU) -> hidden (ReLU) -> num_classes logits."""
    raise NotImplementedError


# %%
def parameters(num_features, num_classes, hidden):
    """Weights and biases of the three dense layers."""
    return (num_features + 1) * hidden + (hidden + 1) * hidden + (hidden + 1) * num_classes


check.shape("logits for 5 digits", lambda: build_net(64, 10, 32)(np.zeros((5, 64))), (5, 10))
check.equal(
    "number of parameters", lambda: build_net(64, 10, 32).count_params(), parameters(64, 10, 32)
)

# %% [markdown]
# ## Summary
#
# * `KERAS_BACKEND` is read at `import keras`: one backend per process.
# * One model definition trains on TensorFlow, PyTorch and JAX to comparable accuracy; exact
#   numbers differ with each backend's random numbers and rounding.
# * Code written with `keras.ops` and Keras layers runs on every backend.
# * Next: [04 · training end to end, logged to TensorBoard](04_training_and_tensorboard.py).
