"""TensorFlow: what it sees, and a few real training steps on the promised device."""

from __future__ import annotations

import importlib.metadata
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ start-up chatter out of reports

from dllab.frameworks import HIDDEN, LR, STEPS, device_kind, toy_data


def probe() -> dict:
    import tensorflow as tf

    info = tf.sysconfig.get_build_info()
    devices = []
    for dev in tf.config.list_physical_devices():
        entry = {"name": dev.name, "kind": device_kind(dev.device_type)}
        if dev.device_type == "GPU":
            entry["model"] = tf.config.experimental.get_device_details(dev).get("device_name")
        devices.append(entry)
    try:
        metal = importlib.metadata.version("tensorflow-metal")
    except importlib.metadata.PackageNotFoundError:
        metal = None
    return {
        "version": tf.__version__,
        "build": {
            "cuda": info.get("cuda_version") if info.get("is_cuda_build") else None,
            "cudnn": info.get("cudnn_version") if info.get("is_cuda_build") else None,
            "metal_plugin": metal,
        },
        "devices": devices,
    }


def train(accelerator: str = "cpu") -> dict:
    import tensorflow as tf

    X, y = toy_data()
    tf.random.set_seed(0)
    device = "/CPU:0" if accelerator == "cpu" else "/GPU:0"
    with tf.device(device):
        X, y = tf.constant(X), tf.constant(y)
        params = [
            tf.Variable(tf.random.normal((X.shape[1], HIDDEN), stddev=0.1)),
            tf.Variable(tf.zeros(HIDDEN)),
            tf.Variable(tf.random.normal((HIDDEN, 2), stddev=0.1)),
            tf.Variable(tf.zeros(2)),
        ]
        before = params[0].numpy().copy()
        losses = []
        for _ in range(STEPS):
            with tf.GradientTape() as tape:
                hidden = tf.nn.relu(X @ params[0] + params[1])
                y_hat = hidden @ params[2] + params[3]
                loss = tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=y_hat)
                )
            for param, grad in zip(params, tape.gradient(loss, params), strict=True):
                param.assign_sub(LR * grad)
            losses.append(float(loss))
    return {
        "device": params[0].device,
        "device_kind": device_kind(params[0].device),
        "losses": losses,
        "params_changed": bool((params[0].numpy() != before).any()),
    }
