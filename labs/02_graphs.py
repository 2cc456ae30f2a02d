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
# # 02 · Eager code, graphs and compilers
#
# All four frameworks run your Python line by line by default (**eager** execution): easy to
# debug, but every operation pays Python's and the framework's dispatch cost. Each also offers
# a way to **trace** a function once into a graph of operations and run that graph instead:
#
# | framework | compile with | what it captures | runs it with |
# |---|---|---|---|
# | TensorFlow | `tf.function` | a `tf.Graph`, by running your Python once with symbolic tensors | TF's graph runtime (Grappler rewrites; XLA with `jit_compile=True`) |
# | PyTorch | `torch.compile` | FX graphs, by reading your function's bytecode (Dynamo) | Inductor: generated C++ (CPU) or Triton (GPU) code |
# | JAX | `jax.jit` | a jaxpr, by running your Python once with tracers | XLA |
#
# "Static graph" used to mean TensorFlow 1 and "dynamic" PyTorch. Today everyone is eager
# first and compiles on request; what remains **static** is what a trace fixes: the shapes and
# dtypes of the inputs and the path taken through Python `if`s and loops. This lab shows
# tracing, retracing and the ops captured, then measures what compiling buys.

# %%
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's C++ start-up log lines

import time
from collections import Counter

import numpy as np
import tensorflow as tf
import torch

from dllab import check, labs

exercise = labs.exercises("02_graphs")
repeat = labs.pick(full=15, fast=3)
n_big = labs.pick(full=1_000_000, fast=100_000)

# %% [markdown]
# ## One function, many small operations
#
# `f` applies 10 rounds of three element-wise operations. On a short vector each operation is
# cheap, so the time goes into dispatching them; on a long one it goes into memory traffic.

# %%
depth = 10
x_small = np.random.default_rng(0).normal(size=1_000).astype(np.float32)
x_big = np.random.default_rng(0).normal(size=n_big).astype(np.float32)


def expected_f(x):
    for _ in range(depth):
        x = np.sin(x) * 0.9 + 0.1
    return x.sum()


timings = {}  # (framework, mode, size) -> labs.Timing

# %% [markdown]
# ## TensorFlow: `tf.function`
#
# Calling a `tf.function` the first time **traces** it: Python runs once, with symbolic
# tensors, and every TF operation is recorded into a graph. A Python `print` inside it runs
# only while tracing, which makes it a handy trace detector.


# %%
def f_tf(x):
    for _ in range(depth):
        x = tf.sin(x) * 0.9 + 0.1
    return tf.reduce_sum(x)


@tf.function
def f_tf_graph(x):
    print("tracing for", x.shape, x.dtype)  # Python: runs while tracing, not in the graph
    return f_tf(x)


f_tf_graph(tf.constant(x_small))  # traces
f_tf_graph(tf.constant(x_small))  # reuses the graph: no print
f_tf_graph(tf.constant(x_small[:10]))  # a new shape: traces again
print("traces so far:", f_tf_graph.experimental_get_tracing_count())

# %% [markdown]
# Each distinct input signature (shape, dtype, and the *value* of Python arguments) gets its own
# graph, a **concrete function**. Retracing on every new shape is slow; `reduce_retracing=True`
# or an `input_signature` with `None` dimensions makes one graph serve many shapes. Here are the
# ops in the graph for vectors of any length:

# %%
concrete = f_tf_graph.get_concrete_function(tf.TensorSpec([None], tf.float32))
print(Counter(op.type for op in concrete.graph.get_operations()))

# %%
for size, x in (("small", x_small), ("big", x_big)):
    x = tf.constant(x)
    timings["TensorFlow", "eager", size] = labs.benchmark(
        lambda x=x: f_tf(x).numpy(), repeat=repeat
    )
    timings["TensorFlow", "tf.function", size] = labs.benchmark(
        lambda x=x: f_tf_graph(x).numpy(), repeat=repeat
    )

# %% [markdown]
# ## PyTorch: `torch.compile`
#
# Dynamo reads the function's Python bytecode and extracts the tensor operations into FX
# graphs; anything it cannot capture causes a **graph break** and runs as ordinary Python.
# `torch._dynamo.explain` reports what it captured without compiling anything:


# %%
def f_torch(x):
    for _ in range(depth):
        x = torch.sin(x) * 0.9 + 0.1
    return x.sum()


explanation = torch._dynamo.explain(f_torch)(torch.from_numpy(x_small))
print("graphs:", explanation.graph_count, "| graph breaks:", explanation.graph_break_count)
print(
    Counter(
        getattr(node.target, "__name__", str(node.target))
        for node in explanation.graphs[0].graph.nodes
        if node.op in ("call_function", "call_method")
    )
)

# %% [markdown]
# The default backend, **Inductor**, fuses those ops into one loop, writes it as C++ for the CPU
# (Triton for a GPU) and builds it with a C++ compiler: dllab's image ships g++ and Python's
# headers for it (natively you need g++ or clang++; on macOS, Xcode's command line tools). The
# first call compiles, which takes about 20 s on 2 cores; later calls, and later kernels, reuse a
# cache in `/tmp/torchinductor_$USER`. Fast mode (CI) uses the `aot_eager` backend instead: the
# same graph capture, run by PyTorch's own kernels without generating code, so it shows the
# capture cost but none of the fusion gains.

# %%
if labs.FAST:  # CI's quick run: capture only, no C++ build
    backend, f_torch_compiled = "aot_eager", torch.compile(f_torch, backend="aot_eager")
else:  # as PyTorch's tutorials call it: the default backend, Inductor
    backend, f_torch_compiled = "inductor", torch.compile(f_torch)
began = time.monotonic()
try:
    f_torch_compiled(torch.from_numpy(x_small))  # the first call traces and compiles
    print(f"torch.compile ({backend}): first call {time.monotonic() - began:.1f} s")
except Exception as exc:  # outside dllab's image: e.g. no C++ compiler (InvalidCxxCompiler)
    print(f"torch.compile failed here ({str(exc).strip().splitlines()[0]}); timing eager only")
    f_torch_compiled = None

# %%
for size, x in (("small", x_small), ("big", x_big)):
    x = torch.from_numpy(x)
    timings["PyTorch", "eager", size] = labs.benchmark(lambda x=x: f_torch(x).item(), repeat=repeat)
    if f_torch_compiled:
        timings["PyTorch", f"compile[{backend}]", size] = labs.benchmark(
            lambda x=x: f_torch_compiled(x).item(), repeat=repeat
        )

# %% [markdown]
# A new shape recompiles once; after that, Dynamo marks the changed dimension as **dynamic** and
# one graph serves all sizes (see `torch._dynamo.mark_dynamic` to do it up front).

# %% [markdown]
# ## JAX: `jax.jit`
#
# `jax.make_jaxpr` shows the trace: one line per primitive, with the input shapes fixed. JAX
# dispatches asynchronously, so a timing must wait for the result with `block_until_ready()`.

# %%
if labs.require("jax"):
    import jax
    import jax.numpy as jnp

    def f_jax(x):
        for _ in range(depth):
            x = jnp.sin(x) * 0.9 + 0.1
        return x.sum()

    f_jax_jit = jax.jit(f_jax)
    jaxpr = jax.make_jaxpr(f_jax)(x_small)
    print("\n".join(jaxpr.pretty_print(use_color=False).splitlines()[:4]), "\n    ...")
    print(Counter(eqn.primitive.name for eqn in jaxpr.eqns))
    for size, x in (("small", x_small), ("big", x_big)):
        x = jnp.asarray(x)
        timings["JAX", "eager", size] = labs.benchmark(
            lambda x=x: f_jax(x).block_until_ready(), repeat=repeat
        )
        timings["JAX", "jit", size] = labs.benchmark(
            lambda x=x: f_jax_jit(x).block_until_ready(), repeat=repeat
        )

# %% [markdown]
# ## Measured: what compiling buys here
#
# Every timing below comes after three warm-up calls (tracing and compiling happen there) and
# is the median of the repeats, with the range. On a busy machine the range is wide: compare
# medians, and distrust differences smaller than the range.

# %%
print(f"{'framework':11} {'mode':20} {'1,000 floats':>36} {f'{n_big:,} floats':>36}")
for framework, mode in dict.fromkeys((fw, m) for fw, m, _ in timings):
    print(
        f"{framework:11} {mode:20} {str(timings[framework, mode, 'small']):>36} "
        f"{str(timings[framework, mode, 'big']):>36}"
    )
for framework, mode in dict.fromkeys((fw, m) for fw, m, _ in timings):
    if mode != "eager":
        small, big = (
            timings[framework, "eager", size].median / timings[framework, mode, size].median
            for size in ("small", "big")
        )
        print(
            f"{framework} {mode}: {small:.1f}x eager's speed on 1,000 floats, {big:.1f}x on {n_big:,}"
        )

# %% [markdown]
# How to read it:
#
# * **Small inputs**: the eager time is mostly per-operation overhead (Python, dispatch,
#   allocating each intermediate result), so one graph for the whole function wins by a large
#   factor in every framework. TensorFlow's eager mode has the highest per-op cost.
# * **Large inputs**: the time goes into arithmetic and memory traffic. A graph alone changes
#   little; a *fusing* compiler (Inductor, XLA) does all 30 operations in one pass over the data
#   instead of 30 passes, and how much that saves depends on the CPU's caches and memory. On the
#   2-core machine dllab's CI runs on, Inductor ran this about 3.5x faster than eager on 1,000
#   floats and 2-10x on a million. `aot_eager` (fast mode) does not fuse.
# * A wide range (slowest far above the median) means the machine was busy: other processes,
#   or a framework's threads waiting for each other (lab 06 measures that).
# * On a GPU the balance shifts again: kernel launches are expensive, so fusion matters more.
#
# So: compile the hot inner step (a training step, not a whole script), keep input shapes
# stable, and measure on your own hardware.

# %% [markdown]
# ## What "static" still means: control flow
#
# A trace records one path through the Python code. When a Python `if` depends on a tensor's
# *value*, each framework reacts differently:
#
# * `tf.function` rewrites it with **AutoGraph** into a `tf.cond` op, so both branches are in
#   the graph.
# * `jax.jit` raises `TracerBoolConversionError`: use `jnp.where` or `jax.lax.cond`.
# * `torch.compile` **breaks the graph** there: correct, but the part around the `if` runs in
#   Python, and a fused graph becomes several small ones.


# %%
def relu_or_shift_torch(x):
    if x.sum() > 0:
        return x * 2
    return x - 1


explanation = torch._dynamo.explain(relu_or_shift_torch)(torch.ones(3))
print("torch: graphs", explanation.graph_count, "| breaks", explanation.graph_break_count)


@tf.function
def relu_or_shift_tf(x):
    if tf.reduce_sum(x) > 0:
        return x * 2
    return x - 1


ops = {op.type for op in relu_or_shift_tf.get_concrete_function(tf.ones(3)).graph.get_operations()}
print("tf.function graph has a conditional:", bool(ops & {"If", "StatelessIf"}))

# %% [markdown]
# ## Exercises
#
# **1.** Write `traced_once(f)`: a `tf.function` of `f` that traces **once** for float32
# vectors of any length. (Hint: `input_signature`, and `None` for an unknown dimension.)


# %%
@exercise
def traced_once(f):
    """A tf.function of f that serves every float32 vector length with one trace."""
    raise NotImplementedError


# %%
def check_traced_once():
    fn = traced_once(f_tf)
    results = [float(fn(tf.constant(x_small[:n]))) for n in (3, 30, 300)]
    return fn.experimental_get_tracing_count() == 1 and np.allclose(
        results, [expected_f(x_small[:n]) for n in (3, 30, 300)], atol=1e-3
    )


check.that(
    "three lengths, one trace",
    check_traced_once,
    hint="tf.function(f, input_signature=[tf.TensorSpec([None], tf.float32)])",
)

# %% [markdown]
# **2.** Rewrite `relu_or_shift_torch` as `branch_free(x)` so that Dynamo captures it as one
# graph with no breaks: keep the data-dependent choice, but make it a tensor operation.


# %%
@exercise
def branch_free(x):
    """x * 2 if x.sum() > 0 else x - 1, without a Python `if` on a tensor."""
    raise NotImplementedError


# %%
for x in (torch.ones(3), -torch.ones(3)):
    check.close(f"same values for {x.tolist()}", lambda x=x: branch_free(x), relu_or_shift_torch(x))
check.equal(
    "no graph breaks",
    lambda: torch._dynamo.explain(branch_free)(torch.ones(3)).graph_break_count,
    0,
    hint="torch.where(condition, a, b) picks between two tensors element by element",
)

# %% [markdown]
# **3.** `power(x, n)` multiplies `x` by itself in a Python loop. `jax.jit(power)` fails: under
# `jit`, `n` is a tracer, and `range()` needs a real integer. Write `jit_static_n(power)`: a
# jitted `power` for which `n` is **static** (part of the trace's key, like a shape).


# %%
def power(x, n):
    result = jnp.ones_like(x)
    for _ in range(n):
        result = result * x
    return result


@exercise
def jit_static_n(power):
    """jax.jit(power) with its argument n static."""
    raise NotImplementedError


# %%
if labs.require("jax"):
    for n in (2, 3):
        check.close(
            f"x ** {n}",
            lambda n=n: jit_static_n(power)(x_small[:5], n),
            x_small[:5] ** n,
            atol=1e-5,
        )

# %% [markdown]
# ## Summary
#
# * Tracing runs your Python once and records ops; Python side effects happen only then.
# * New shapes or dtypes retrace (TF, JAX) or recompile (PyTorch, then dynamic shapes): keep
#   signatures stable, or declare the dynamic dimensions.
# * Compiling removes per-op overhead; fusing compilers also cut memory traffic. Measure
#   after warm-up, and read the range, not just the median.
# * Next: [03 · one Keras model on every backend](03_keras_backends.py).
