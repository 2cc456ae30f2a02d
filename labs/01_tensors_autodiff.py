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
# # 01 · Tensors and automatic differentiation, four ways
#
# Every framework here does the same two things: it stores numbers in **tensors**
# (n-dimensional arrays, possibly on a GPU) and it computes **gradients** of a scalar
# function of them automatically. They differ in *how* you ask for the gradient:
#
# | framework | how you ask for df/dx |
# |---|---|
# | TensorFlow | record the computation on a `tf.GradientTape`, then `tape.gradient(f, x)` |
# | PyTorch | create `x` with `requires_grad=True`, compute `f`, call `f.backward()`, read `x.grad` |
# | JAX | transform the function: `jax.grad(f)` is a new function that returns df/dx |
# | Keras 3 | `keras.ops` computes `f` on any backend; the gradient comes from that backend |
#
# We compute one function and its gradient in each, and check that they agree with each
# other and with the derivative worked out by hand.

# %%
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's C++ start-up log lines

import keras
import numpy as np
import tensorflow as tf
import torch

from dllab import check, labs

exercise = labs.exercises("01_tensors_autodiff")

# %% [markdown]
# ## The function
#
# $f(x) = \sum_i x_i^2 \sin x_i$, whose gradient is $\partial f/\partial x_i = 2 x_i \sin x_i + x_i^2 \cos x_i$.
# NumPy computes the reference values; it has no autodiff, so we write the derivative by hand.

# %%
x = np.linspace(-1.0, 2.0, 5, dtype=np.float32)
expected_f = np.sum(x**2 * np.sin(x))
expected_grad = 2 * x * np.sin(x) + x**2 * np.cos(x)
print("f(x) =", expected_f)
print("df/dx =", expected_grad)

# %% [markdown]
# ## TensorFlow
#
# Tensors are immutable; trainable state lives in `tf.Variable`. A `GradientTape` records the
# operations run inside its `with` block on *watched* tensors (variables are watched
# automatically, constants need `tape.watch`).

# %%
x_tf = tf.constant(x)
with tf.GradientTape() as tape:
    tape.watch(x_tf)
    f_tf = tf.reduce_sum(x_tf**2 * tf.sin(x_tf))
grad_tf = tape.gradient(f_tf, x_tf)
print(f_tf.numpy(), grad_tf.numpy(), grad_tf.dtype, grad_tf.device)

# %% [markdown]
# ## PyTorch
#
# Every tensor created with `requires_grad=True` is a leaf of a graph that PyTorch builds while
# your code runs; `backward()` walks it in reverse and *accumulates* into `.grad` (call it twice
# and the gradient doubles, which is why training loops call `optimizer.zero_grad()`).

# %%
x_torch = torch.tensor(x, requires_grad=True)
f_torch = (x_torch**2 * torch.sin(x_torch)).sum()
f_torch.backward()
grad_torch = x_torch.grad
print(f_torch.item(), grad_torch, grad_torch.dtype, grad_torch.device)

# %% [markdown]
# ## Keras 3
#
# `keras.ops` is a NumPy-like API that runs on whichever backend Keras was imported with. It
# has no `grad` of its own: a custom training step asks the backend (see Keras's guides
# "customizing what happens in fit()" for each backend). Here we do the same.


# %%
def f_keras(x):
    return keras.ops.sum(x**2 * keras.ops.sin(x))


def backend_grad(f, x):
    """df/dx at x with the autodiff of Keras's current backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = f(x)
        return tape.gradient(y, x)
    if backend == "torch":
        x = torch.tensor(x, requires_grad=True)
        f(x).backward()
        return x.grad
    import jax  # the only backend left; imported here because not every variant ships JAX

    return jax.grad(f)(x)


print("Keras backend:", keras.backend.backend())
f_keras_value = f_keras(keras.ops.convert_to_tensor(x))
grad_keras = keras.ops.convert_to_numpy(backend_grad(f_keras, x))
print(keras.ops.convert_to_numpy(f_keras_value), grad_keras)

# %% [markdown]
# ## JAX
#
# JAX transforms *functions*: `jax.grad(f)` returns a function computing df/dx. Arrays are
# immutable and there is no tape; `f` must be a pure function of its inputs. JAX ships in the
# cpu variant only.

# %%
if labs.require("jax"):
    import jax
    import jax.numpy as jnp

    def f_jax(x):
        return jnp.sum(x**2 * jnp.sin(x))

    grad_jax = jax.grad(f_jax)(x)
    print(f_jax(x), grad_jax, grad_jax.dtype, grad_jax.devices())

# %% [markdown]
# ## Do they agree?
#
# Float32 arithmetic is not associative, and each framework may order or fuse operations
# differently, so we compare with a tolerance rather than for equality.

# %%
check.close("TensorFlow gradient", grad_tf, expected_grad, atol=1e-5)
check.close("PyTorch gradient", grad_torch, expected_grad, atol=1e-5)
check.close("Keras gradient", grad_keras, expected_grad, atol=1e-5)
if labs.require("jax"):
    check.close("JAX gradient", grad_jax, expected_grad, atol=1e-5)

# %% [markdown]
# ### A dtype trap
#
# NumPy's default float is float64. `torch.from_numpy`, `tf.constant` and `keras.ops` keep it;
# JAX silently makes it float32 unless 64-bit mode is on; Keras *layers* cast their inputs to
# `keras.config.floatx()` (float32). Mixing float64 data with float32 weights is an error in
# PyTorch and TensorFlow, so convert once, on purpose: `X = X.astype(np.float32)`.

# %%
x64 = np.linspace(-2.0, 2.0, 5)
print("numpy:", x64.dtype, "| torch:", torch.from_numpy(x64).dtype, "| tf:", tf.constant(x64).dtype)
print("keras:", keras.ops.convert_to_tensor(x64).dtype, "(floatx =", keras.config.floatx() + ")")
if labs.require("jax"):
    print("jax:", jnp.asarray(x64).dtype)

# %% [markdown]
# ## Exercises: the gradient of a loss
#
# Training is gradient descent on a loss. Take linear regression with mean squared error:
#
# $$L(w) = \frac{1}{n}\sum_i (X_i \cdot w - y_i)^2, \qquad \nabla_w L = \frac{2}{n} X^\top (Xw - y).$$
#
# Complete each function so it returns $\nabla_w L$ computed by the framework's autodiff (not
# by the formula), as that framework's tensor. `X` is `(n, d)`, `y` is `(n,)`, `w` is `(d,)`,
# all NumPy float32.

# %%
rng = np.random.default_rng(0)
X = rng.normal(size=(32, 3)).astype(np.float32)
y = (X @ np.array([2.0, -1.0, 0.5]) + 0.1 * rng.normal(size=32)).astype(np.float32)
w = np.zeros(3, dtype=np.float32)
expected_grad_w = 2 / len(X) * X.T @ (X @ w - y)
print("expected gradient:", expected_grad_w)

# %% [markdown]
# **1. TensorFlow** (`tf.GradientTape`; make `w` a `tf.Variable` or watch it).


# %%
@exercise
def mse_grad_tf(X, y, w):
    """dL/dw of the mean squared error, with tf.GradientTape."""
    raise NotImplementedError


# %%
check.close("TensorFlow dL/dw", lambda: mse_grad_tf(X, y, w), expected_grad_w, atol=1e-5)

# %% [markdown]
# **2. PyTorch** (`requires_grad=True`, `.backward()`, `.grad`).


# %%
@exercise
def mse_grad_torch(X, y, w):
    """dL/dw of the mean squared error, with torch autograd."""
    raise NotImplementedError


# %%
check.close("PyTorch dL/dw", lambda: mse_grad_torch(X, y, w), expected_grad_w, atol=1e-5)

# %% [markdown]
# **3. Keras**: write the *loss* with `keras.ops` only, so it runs on any backend; the cell
# below differentiates it with `backend_grad` from above.


# %%
@exercise
def mse_keras(X, y, w):
    """The mean squared error of X @ w against y, with keras.ops."""
    raise NotImplementedError


# %%
check.close(
    "Keras loss",
    lambda: keras.ops.convert_to_numpy(mse_keras(X, y, w)),
    np.mean((X @ w - y) ** 2),
    atol=1e-5,
)
check.close(
    "Keras dL/dw",
    lambda: keras.ops.convert_to_numpy(backend_grad(lambda w: mse_keras(X, y, w), w)),
    expected_grad_w,
    atol=1e-5,
    hint="use keras.ops for every step (keras.ops.subtract, not `-` between a tensor and an array)",
)

# %% [markdown]
# **4. JAX** (`jax.grad` of a function of `w`).


# %%
@exercise
def mse_grad_jax(X, y, w):
    """dL/dw of the mean squared error, with jax.grad."""
    raise NotImplementedError


# %%
if labs.require("jax"):
    check.close("JAX dL/dw", lambda: mse_grad_jax(X, y, w), expected_grad_w, atol=1e-5)

# %% [markdown]
# **5. One step downhill.** Write `sgd_step(w, grad, lr)`: one step of gradient descent,
# `w` moved against its gradient by the learning rate `lr`. It should work on NumPy arrays.


# %%
@exercise
def sgd_step(w, grad, lr):
    """w after one gradient-descent step with learning rate lr."""
    raise NotImplementedError


# %%
lr = 0.1


def loss(w):
    return float(np.mean((X @ w - y) ** 2))


check.close("one SGD step", lambda: sgd_step(w, expected_grad_w, lr), w - lr * expected_grad_w)
check.that(
    "the step lowers the loss",
    lambda: loss(sgd_step(w, expected_grad_w, lr)) < loss(w),
    hint="step against the gradient: subtract lr * grad",
)

# %% [markdown]
# ## Summary
#
# * One computation, four spellings of autodiff: a tape (TF), a graph built as code runs
#   (PyTorch), a function transformation (JAX), and a backend-agnostic op set (Keras).
# * Results agree to float32 rounding, not bit for bit.
# * Next: [02 · graphs, tracing and compilation](02_graphs.py).
