"""Reference solutions for 01_tensors_autodiff.py."""

import keras
import tensorflow as tf
import torch


def mse_grad_tf(X, y, w):
    """dL/dw of the mean squared error, with tf.GradientTape."""
    w = tf.Variable(w)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean((tf.linalg.matvec(X, w) - y) ** 2)
    return tape.gradient(loss, w)


def mse_grad_torch(X, y, w):
    """dL/dw of the mean squared error, with torch autograd."""
    w = torch.tensor(w, requires_grad=True)
    loss = ((torch.from_numpy(X) @ w - torch.from_numpy(y)) ** 2).mean()
    loss.backward()
    return w.grad


def mse_keras(X, y, w):
    """The mean squared error of X @ w against y, with keras.ops."""
    # keras.ops.subtract, not `-`: tensor - ndarray can hand the work to NumPy, which fails on
    # a PyTorch tensor that requires grad
    return keras.ops.mean(keras.ops.square(keras.ops.subtract(keras.ops.matmul(X, w), y)))


def mse_grad_jax(X, y, w):
    """dL/dw of the mean squared error, with jax.grad."""
    import jax  # not every variant ships JAX: import it only when this exercise runs
    import jax.numpy as jnp

    return jax.grad(lambda w: jnp.mean((X @ w - y) ** 2))(w)


def sgd_step(w, grad, lr):
    """w after one gradient-descent step with learning rate lr."""
    return w - lr * grad
