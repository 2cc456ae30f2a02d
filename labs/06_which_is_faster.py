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
# # 06 · Which is faster?
#
# "Which framework is fastest?" has no general answer, only measurements of one workload on
# one machine. Here is one, done carefully: the **same MLP** (64 → hidden → hidden → 10, SGD
# with momentum, the same batch size) trained on the same digits by plain TensorFlow, by
# PyTorch, and by Keras on each installed backend, on this kernel's device. We report
# **training throughput** in samples per second.
#
# How to measure without fooling yourself:
#
# 1. **Warm up.** The first epoch includes tracing, compiling, memory allocation and cold
#    caches. Time only the epochs after it.
# 2. **Repeat**, and report the **median** (robust to one slow outlier) with the **spread**
#    (here: the fastest and slowest repeat).
# 3. **One run at a time.** Two jobs sharing the CPU slow each other down.
# 4. Wait for the result before stopping the clock (`.numpy()`, `.item()`): some frameworks
#    return before the work is done.

# %%
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's C++ start-up log lines

import itertools
import json
import subprocess
import sys
import time

import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
import torch

from dllab import check, labs
from dllab.frameworks import KERAS_BACKENDS

exercise = labs.exercises("06_which_is_faster")

X_train, X_test, y_train, y_test = labs.digits()
hidden = labs.pick(full=256, fast=64)
batch_size = 128
lr = 0.05
warmup = labs.pick(full=2, fast=1)  # epochs
repeats = labs.pick(full=10, fast=3)  # timed epochs
num_epochs = warmup + repeats
sizes = [X_train.shape[1], hidden, hidden, 10]
epoch_seconds = {}  # framework -> seconds of each epoch, warm-up included
print(f"{len(X_train)} samples per epoch, {num_epochs} epochs ({warmup} warm-up), hidden={hidden}")
print(
    "device: CPU,",
    len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    "cores",
)

# %% [markdown]
# ## TensorFlow (a `tf.function` training step)

# %%
rng = tf.random.Generator.from_seed(0)
params = [
    tf.Variable(rng.normal((m, n), stddev=np.sqrt(2 / m))) for m, n in itertools.pairwise(sizes)
] + [tf.Variable(tf.zeros(n)) for n in sizes[1:]]
velocity = [tf.Variable(tf.zeros_like(p)) for p in params]


def net_tf(X):
    weights, biases = params[:3], params[3:]
    for w, b in zip(weights[:-1], biases[:-1], strict=True):
        X = tf.nn.relu(X @ w + b)
    return X @ weights[-1] + biases[-1]


@tf.function
def train_step(X, y):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, net_tf(X)))
    for p, v, g in zip(params, velocity, tape.gradient(loss, params), strict=True):
        v.assign(0.9 * v + g)
        p.assign_sub(lr * v)
    return loss


batches = tf.data.Dataset.from_tensor_slices((X_train, y_train)).batch(batch_size).cache()
seconds = []
for _ in range(num_epochs):
    start = time.perf_counter()
    for X, y in batches:
        loss = train_step(X, y)
    loss.numpy()  # wait for the last step
    seconds.append(time.perf_counter() - start)
epoch_seconds["TensorFlow"] = seconds

# %% [markdown]
# ## PyTorch (eager), and its threads
#
# PyTorch splits each CPU operation across `torch.get_num_threads()` threads. For small
# operations the coordination can cost more than it saves, and on a busy machine one thread
# waiting for a descheduled sibling stalls the rest. So we time PyTorch twice: with its default
# thread count, and with one thread.


# %%
def time_torch_epochs():
    """Seconds per epoch of the MLP trained with torch.optim.SGD, warm-up included."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(sizes[0], sizes[1]),
        torch.nn.ReLU(),
        torch.nn.Linear(sizes[1], sizes[2]),
        torch.nn.ReLU(),
        torch.nn.Linear(sizes[2], sizes[3]),
    )
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    X_all, y_all = torch.from_numpy(X_train), torch.from_numpy(y_train)
    seconds = []
    for _ in range(num_epochs):
        start = time.perf_counter()
        for i in range(0, len(X_all), batch_size):
            X, y = X_all[i : i + batch_size], y_all[i : i + batch_size]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(X), y)
            loss.backward()
            optimizer.step()
        loss.item()  # on a GPU this waits for the queued work; on the CPU it is already done
        seconds.append(time.perf_counter() - start)
    return seconds


threads = torch.get_num_threads()
epoch_seconds[f"PyTorch, {threads} thr."] = time_torch_epochs()
if threads > 1:
    torch.set_num_threads(1)
    epoch_seconds["PyTorch, 1 thr."] = time_torch_epochs()
    torch.set_num_threads(threads)

# %% [markdown]
# ## Keras, once per backend
#
# `keras_mlp.py` (see lab 03) times each epoch with a callback and prints the list. Each
# backend runs in its own process, **one after another**.

# %%
script = labs.lab_file("keras_mlp.py")
for backend in KERAS_BACKENDS:
    if not labs.require(backend, section=f"Keras on {backend}"):
        continue
    proc = subprocess.run(
        [sys.executable, str(script), "--epochs", str(num_epochs), "--hidden", str(hidden)]
        + ["--batch-size", str(batch_size), "--lr", str(lr)],
        capture_output=True,
        text=True,
        env=dict(os.environ, KERAS_BACKEND=backend),
    )
    if proc.returncode != 0:
        print(f"keras-{backend} failed:", proc.stderr.strip().splitlines()[-1])
        continue
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    epoch_seconds[f"keras-{backend}"] = result["epoch_seconds"]
    print(f"keras-{backend}: jit_compile={result['jit_compile']}")

# %% [markdown]
# ## Results

# %%
samples = len(X_train)
timings = {name: labs.Timing(tuple(s[warmup:])) for name, s in epoch_seconds.items()}
print(f"{'':17} {'warm-up epoch':>14} {'median samples/s':>17} {'slowest-fastest':>20}")
for name, timing in timings.items():
    print(
        f"{name:17} {epoch_seconds[name][0]:13.3f}s {samples / timing.median:17,.0f} "
        f"{samples / timing.high:9,.0f}-{samples / timing.low:<9,.0f}"
    )

names = list(timings)
medians = np.array([samples / timings[n].median for n in names])
errors = np.array(
    [
        [m - samples / timings[n].high for m, n in zip(medians, names, strict=True)],
        [samples / timings[n].low - m for m, n in zip(medians, names, strict=True)],
    ]
)
fig, ax = plt.subplots(figsize=(7, 3))
ax.barh(names, medians, xerr=errors, capsize=4, color="tab:blue")
ax.set_xlabel("training samples per second (median; bars: fastest to slowest epoch)")
ax.set_title(f"MLP 64-{hidden}-{hidden}-10, batch {batch_size}, {repeats} timed epochs")
ax.invert_yaxis()
fig.tight_layout()
fig.savefig(labs.runs_dir("06_which_is_faster") / "throughput.png", dpi=120)
plt.show()

# %% [markdown]
# ## Reading the numbers honestly
#
# * **Spread first.** If two bars' ranges overlap, this run cannot tell them apart; run again
#   and the order may flip. On a shared or laptop CPU (other processes, thermal throttling,
#   turbo), epochs that differ by 2× or more are ordinary.
# * **Threads.** Compare the two PyTorch rows. If one thread wins, the work per operation was
#   too small to split, or the cores were busy with something else. `torch.set_num_threads`,
#   `tf.config.threading` and the `OMP_NUM_THREADS` variable control this.
# * **The warm-up column** is where tracing and compiling went: large for XLA (`jit_compile`)
#   and `tf.function`, small for eager PyTorch. For short jobs it can dominate the total.
# * **This is a tiny model.** With matrices this small, per-step overhead (Python, dispatch,
#   the optimizer's many small updates) outweighs arithmetic, so compiled steps (JAX, XLA)
#   tend to win and eager ones with more layers of Python (Keras on PyTorch) lose. Grow
#   `hidden` and the matrix multiplications dominate; every framework then calls similar
#   BLAS kernels (oneDNN, MKL, Eigen) and the gap shrinks.
# * **Not measured here:** data loading, GPUs, mixed precision, multi-device training. Each can
#   reorder the ranking. Measure *your* workload.

# %%
for name, seconds in epoch_seconds.items():
    check.equal(f"{name}: {num_epochs} epochs timed", len(seconds), num_epochs)
check.that(
    "every framework trained at a measurable speed",
    all(t.median > 0 for t in timings.values()),
    hint="an epoch took no time: was the clock stopped before the work finished?",
)

# %% [markdown]
# ## Exercises
#
# **1.** Write `throughputs(seconds, samples, warmup)`: the samples per second of each epoch in
# `seconds`, skipping the first `warmup` epochs, as a NumPy array.


# %%
@exercise
def throughputs(seconds, samples, warmup):
    """Samples/s of each timed epoch, warm-up epochs dropped."""
    raise NotImplementedError


# %%
check.close("throughputs", lambda: throughputs([5.0, 1.0, 2.0, 0.5], 100, 1), [100.0, 50.0, 200.0])
check.close("no warm-up", lambda: throughputs([1.0, 4.0], 8, 0), [8.0, 2.0])

# %% [markdown]
# **2.** Write `clearly_faster(a, b)`: given two arrays of throughputs, `True` only if even the
# *slowest* repeat of `a` beats the *fastest* repeat of `b` (the ranges do not overlap).
# Anything else is "cannot tell from this run".


# %%
@exercise
def clearly_faster(a, b):
    """True if every throughput in a exceeds every throughput in b."""
    raise NotImplementedError


# %%
check.equal("separated ranges", lambda: bool(clearly_faster([10, 11, 12], [7, 8, 9])), True)
check.equal("overlapping ranges", lambda: bool(clearly_faster([10, 11, 20], [7, 8, 10.5])), False)
check.equal("slower", lambda: bool(clearly_faster([1, 2], [3, 4])), False)

# %% [markdown]
# Now apply it to the table above: which pairs can this run actually rank?

# %%
rates = {name: samples / np.array(s[warmup:]) for name, s in epoch_seconds.items()}
for a, b in itertools.permutations(rates, 2):
    try:
        if clearly_faster(rates[a], rates[b]):
            print(f"{a} is clearly faster than {b}")
    except NotImplementedError:
        print("complete clearly_faster above to rank the frameworks")
        break

# %% [markdown]
# ## Summary
#
# * Warm up, repeat, take the median, show the spread, and run one job at a time.
# * Only differences larger than the spread are findings; the rest is noise.
# * Framework speed depends on the workload's size and shape and on the device: the honest
#   answer to "which is faster" is a measurement like this one, on your model.
