"""Reference solutions for 02_graphs.py."""

import tensorflow as tf
import torch


def traced_once(f):
    """A tf.function of f that serves every float32 vector length with one trace."""
    return tf.function(f, input_signature=[tf.TensorSpec([None], tf.float32)])


def branch_free(x):
    """x * 2 if x.sum() > 0 else x - 1, without a Python `if` on a tensor."""
    return torch.where(x.sum() > 0, x * 2, x - 1)


def jit_static_n(power):
    """jax.jit(power) with its argument n static."""
    import jax  # not every variant ships JAX: import it only when this exercise runs

    return jax.jit(power, static_argnames="n")
