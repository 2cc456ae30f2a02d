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
# # 07 · Several workers, one model
#
# When one machine is too slow, **data parallelism** trains the *same* model on several
# workers (processes, containers, machines, GPUs). On every step:
#
# 1. **Shard**: the global batch of `B` rows is split into `N` shards of `B / N` rows, one per
#    worker.
# 2. Each worker runs the forward and backward pass **on its shard only**.
# 3. **All-reduce**: the workers exchange gradients so that each ends up with their *average*
#    (for equal shards, the average of the shards' mean gradients *is* the gradient of the
#    whole global batch).
# 4. Every worker applies that same gradient to its copy of the weights.
#
# Same start + same gradient on every step = **the same weights everywhere**, and the same
# weights a single worker would reach on the same global batch (up to float rounding: adding in
# another order rounds differently).
#
# We never write the all-reduce ourselves. Each framework ships its own engine:
#
# | | launcher | who am I, who are my peers | all-reduce |
# |---|---|---|---|
# | **PyTorch** | `torchrun` (one per machine) | `RANK`, `WORLD_SIZE`, `MASTER_ADDR`/`PORT` | `DistributedDataParallel`: gloo (CPU) or NCCL (GPU), during `backward()` |
# | **TensorFlow** | you start each worker | `TF_CONFIG` (the cluster + this task's index) | `MultiWorkerMirroredStrategy`: ring (CPU) or NCCL (GPU) |
# | **Keras 3 on JAX** | you start each worker | `keras.distribution.initialize(...)` (coordinator address, count, id) | `keras.distribution.DataParallel`: XLA collectives over all processes' devices |
#
# All three run the same script here, `dllab.train_worker` (an MLP on a generated 4-class
# problem, no download), with identical initial weights. It prints its result as one JSON
# line. We start the workers as **local processes**; `invoke train --workers N` starts the same
# script in N containers, and `deploy/k8s/` on a Kubernetes cluster.

# %%
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import socket
import subprocess
import sys
import time

import numpy as np

from dllab import check, labs, train_worker

exercise = labs.exercises("07_several_workers")

epochs = labs.pick(full=5, fast=2)
N = 2  # workers: this machine may have only 2 cores, and each worker is a whole process
FRAMEWORKS = ["torch", "tensorflow"] + (
    ["keras-jax"] if labs.require("jax", "Keras on JAX") else []
)
print(f"{N} workers, {epochs} epochs, frameworks: {', '.join(FRAMEWORKS)}")

# %% [markdown]
# ## Launching N workers on this machine
#
# `launch` starts N processes of `dllab.train_worker`, each with the variables its framework's
# engine reads, waits for all of them and returns each worker's result. Read how the three
# differ: that is all the "distributed" part there is from the outside.


# %%
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_commands(framework: str, n: int, epochs: int) -> list[tuple[list[str], dict]]:
    """(argument list, extra environment) for each of the n workers."""
    script = ["-m", "dllab.train_worker", "--framework", framework, "--epochs", str(epochs)]
    threads = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // n))}
    if n == 1:  # one plain process: no launcher, no peers
        return [([sys.executable, *script], threads)]
    if framework == "torch":
        # One torchrun starts all n local processes and sets RANK/WORLD_SIZE for each.
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1"]
        torchrun += ["--nproc-per-node", str(n), "--master-addr", "127.0.0.1"]
        return [([*torchrun, "--master-port", str(free_port()), *script], threads)]
    if framework == "tensorflow":
        cluster = {"worker": [f"127.0.0.1:{free_port()}" for _ in range(n)]}
        return [
            (
                [sys.executable, *script],
                dict(
                    threads,
                    TF_CONFIG=json.dumps(
                        {"cluster": cluster, "task": {"type": "worker", "index": i}}
                    ),
                ),
            )
            for i in range(n)
        ]
    coordinator = f"127.0.0.1:{free_port()}"  # keras-jax: process 0 coordinates
    return [
        (
            [sys.executable, *script],
            dict(
                threads,
                KERAS_DISTRIBUTION_JOB_ADDRESSES=coordinator,
                KERAS_DISTRIBUTION_NUM_PROCESSES=str(n),
                KERAS_DISTRIBUTION_PROCESS_ID=str(i),
            ),
        )
        for i in range(n)
    ]


def launch(framework: str, n: int, epochs: int = epochs) -> list[dict]:
    """Run n workers to their end; their results, by rank."""
    procs = [
        subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, **env),
        )
        for cmd, env in worker_commands(framework, n, epochs)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            # 40 lines: torchrun's own summary is 10, the worker's error is above it.
            raise RuntimeError(
                f"a {framework} worker failed:\n" + "\n".join(out.splitlines()[-40:])
            )
        results += [
            json.loads(line[len(train_worker.RESULT) :])
            for line in out.splitlines()
            if line.startswith(train_worker.RESULT)
        ]
    return sorted(results, key=lambda r: r["rank"])


# %% [markdown]
# ## The same run on 1 and on N workers, in each framework

# %%
runs = {}  # (framework, workers) -> results
for framework in FRAMEWORKS:
    for n in (1, N):
        start = time.perf_counter()
        runs[framework, n] = launch(framework, n)
        print(
            f"{framework}, {n} worker{'s' if n > 1 else ''}: {time.perf_counter() - start:.1f} s wall"
        )
        for r in runs[framework, n]:
            print(
                f"  rank {r['rank']}/{r['world']}: loss {r['initial_loss']:.4f} -> {r['loss']:.9f}, "
                f"weights {r['digest']}, {r['engine']}"
            )

# %%
for framework in FRAMEWORKS:
    check.equal(f"{framework}: {N} workers reported", len(runs[framework, N]), N)
    check.that(
        f"{framework}: the loss fell",
        runs[framework, N][0]["loss"] < runs[framework, N][0]["initial_loss"],
        hint="training did not reduce the loss: is the learning rate 0?",
    )

# %% [markdown]
# Look at the digests: within one run, every rank prints the **same** digest (the all-reduce
# kept the copies identical). Between the 1-worker and the N-worker run the digest usually
# *differs* while the loss agrees to about 8 digits: the gradient is the same sum, added in
# another order, and float32 rounding depends on the order. That is why "N workers match one
# worker" must be checked **within a tolerance**, never with `==` on the bytes.
#
# ## Exercises
#
# **1.** Write `shard(batch, rank, world)`: the rows of one global `batch` that worker `rank`
# of `world` trains on — the `rank`-th of `world` equal, contiguous slices (this is what
# `dllab.train_worker` does). Assume `len(batch)` divides by `world`.


# %%
@exercise
def shard(batch, rank, world):
    """Worker `rank`'s contiguous 1/world slice of the global batch."""
    raise NotImplementedError


# %%
batch = np.arange(12).reshape(6, 2)
check.close("shard 0 of 3", lambda: shard(batch, 0, 3), [[0, 1], [2, 3]])
check.close("shard 2 of 3", lambda: shard(batch, 2, 3), [[8, 9], [10, 11]])
check.close("one worker gets it all", lambda: shard(batch, 0, 1), batch)

# %% [markdown]
# **2.** Write `all_reduce_mean(grads)`: given one gradient array per worker, the average
# that every worker receives from the all-reduce. Then see why it equals one worker's gradient
# on the whole batch: below, each worker computes the gradient of the mean squared error of a
# linear model on its shard.


# %%
@exercise
def all_reduce_mean(grads):
    """The element-wise mean of the workers' gradients (what each worker gets back)."""
    raise NotImplementedError


# %%
def mse_gradient(X, y, w):
    return 2 * X.T @ (X @ w - y) / len(X)


rng = np.random.default_rng(0)
X, y, w = rng.normal(size=(8, 3)), rng.normal(size=8), rng.normal(size=3)


def per_worker_gradients(world=4):
    """Each worker's gradient, on its own shard only."""
    return [mse_gradient(shard(X, r, world), shard(y, r, world), w) for r in range(world)]


check.close(
    "all-reduce of [1, 3] and [3, 5]",
    lambda: all_reduce_mean([np.array([1.0, 3]), np.array([3.0, 5])]),
    [2.0, 4.0],
)
check.close(
    "4 workers' averaged gradient == 1 worker's gradient on the global batch",
    lambda: all_reduce_mean(per_worker_gradients()),
    mse_gradient(X, y, w),
    hint="the shards must be equal in size for the mean of means to be the global mean",
)

# %% [markdown]
# **3.** Write `workers_match(results_n, results_1, rtol)`: `True` if the N-worker run is
# consistent (every worker has the same weight `digest`) **and** its final `loss` equals the
# one-worker run's within a relative tolerance `rtol`.


# %%
@exercise
def workers_match(results_n, results_1, rtol):
    """N workers agree with each other, and with one worker within rtol."""
    raise NotImplementedError


# %%
fake = [dict(digest="ab", loss=0.5), dict(digest="ab", loss=0.5)]
check.that(
    "same digests, same loss",
    lambda: workers_match(fake, [dict(digest="cd", loss=0.5000001)], 1e-5),
    hint="compare losses with a relative tolerance: abs(a - b) <= rtol * abs(b)",
)
check.that(
    "a worker that drifted apart is caught",
    lambda: not workers_match([fake[0], dict(digest="ef", loss=0.5)], fake[:1], 1e-5),
    hint="every worker's digest must be the same",
)
check.that(
    "a loss beyond the tolerance is caught",
    lambda: not workers_match(fake, [dict(digest="ab", loss=0.6)], 1e-5),
    hint="the N-worker loss must be within rtol of the 1-worker loss",
)

# %% [markdown]
# Now on the real runs above. Why `rtol = 1e-5`: the N-worker sum of gradients is added in
# another order than one worker's, so each step can differ by a few float32 roundings (about
# `1e-7` relative); over this short run that stays far below `1e-5`, while a real mistake
# (a worker training on the wrong rows, gradients summed instead of averaged) moves the loss
# by more than `1e-2`.

# %%
for framework in FRAMEWORKS:
    check.that(
        f"{framework}: {N} workers match 1 worker on the same global batch",
        lambda framework=framework: workers_match(runs[framework, N], runs[framework, 1], 1e-5),
        hint="complete workers_match above",
    )

# %% [markdown]
# ## What it costs
#
# Every step now waits for a network round trip, and every worker pays its framework's
# start-up (imports, connecting to its peers). On one small machine, N workers share the same
# cores, so they are rarely faster than one: the point of data parallelism is more memory,
# more GPUs and more machines, not more speed from the same two cores.
#
# Each worker also switches its framework's determinism on (`dllab.train_worker`), so the same
# run repeated ends with the same weights, bit for bit (compare `digest`s with `==`): only 1
# against N workers, which add in another order, needs a tolerance. On a GPU deterministic
# kernels are slower (40-50 % for torch's small models on an H200, BENCHMARKS.md), which is
# why frameworks leave them off by default.

# %%
for framework in FRAMEWORKS:
    for n in (1, N):
        r = runs[framework, n][0]
        print(
            f"{framework:10} {n} worker{'s' if n > 1 else ' '}: {r['samples_per_second']:>10,.0f} samples/s, "
            f"start-up {r['startup_seconds']:.1f} s"
        )

# %% [markdown]
# ## Summary
#
# * Data parallelism = shard the global batch, all-reduce (average) the gradients, apply the
#   same update everywhere: the workers stay identical.
# * Use the frameworks' engines: `torchrun` + DDP, `MultiWorkerMirroredStrategy` + `TF_CONFIG`,
#   `keras.distribution` on JAX. (Keras's `model.fit` under `MultiWorkerMirroredStrategy` fails
#   with 2 workers in Keras 3.15 on TF 2.21, keras-team/keras#20585: hence a custom TF loop.)
# * N workers match one worker on the same global batch **within float rounding**: compare
#   with a tolerance.
# * Next: `invoke train --workers 2 --framework torch` runs this across containers, and
#   `deploy/k8s/` on a cluster.
