"""TensorFlow: what it sees, and a few real training steps on the promised device."""

from __future__ import annotations

import functools
import importlib.metadata
import os

from dllab.frameworks import (
    HIDDEN,
    LR,
    STEPS,
    TF_CPP_MIN_LOG_LEVEL,
    dense,
    device_kind,
    fan_in_scale,
    toy_data,
)
from dllab.frameworks.plugin import Bench, DeviceSeen, Measurements, Probe, Rate, Training
from dllab.frameworks.timing import begin, measure, per_dtype

# Before TF is imported: keep its C++ start-up chatter out of reports.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_CPP_MIN_LOG_LEVEL)
# The device TF places work on for each accelerator (tensorflow-metal's GPU is a "GPU" too).
TF_DEVICES = {"cpu": "/CPU:0", "cuda": "/GPU:0", "mps": "/GPU:0"}


def probe() -> Probe:
    import tensorflow as tf

    info = tf.sysconfig.get_build_info()
    devices: list[DeviceSeen] = []
    for dev in tf.config.list_physical_devices():
        entry: DeviceSeen = {"name": dev.name, "kind": device_kind(dev.device_type)}
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


def deterministic() -> None:
    """TF's op determinism: deterministic kernels (an op that has none raises), one op at a time."""
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()


def layers(*shapes: tuple[int, ...]) -> list:
    """[weight, bias] variables for each shape: normal weights scaled by 1/sqrt(fan-in), zero biases."""
    import tensorflow as tf

    params = []
    for shape in shapes:
        params += [
            tf.Variable(tf.random.normal(shape, stddev=fan_in_scale(shape))),
            tf.Variable(tf.zeros(shape[-1])),
        ]
    return params


def sgd_step(forward, params: list, X, y, lr: float):
    """One SGD step on the logits `forward(params, X)` for labels y; the loss."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=forward(params, X))
        )
    for param, grad in zip(params, tape.gradient(loss, params), strict=True):
        param.assign_sub(lr * grad)
    return loss


def train(accelerator: str = "cpu") -> Training:
    import tensorflow as tf

    deterministic()
    tf.random.set_seed(0)
    with tf.device(TF_DEVICES[accelerator]):
        X, y = (tf.constant(a) for a in toy_data())
        params = layers((X.shape[1], HIDDEN), (HIDDEN, 2))
        before = params[0].numpy().copy()
        forward = functools.partial(dense, tf.nn.relu)
        losses = [float(sgd_step(forward, params, X, y, LR)) for _ in range(STEPS)]
    return {
        "device": params[0].device,
        "device_kind": device_kind(params[0].device),
        "losses": losses,
        "params_changed": bool((params[0].numpy() != before).any()),
    }


def bench(accelerator: str, settings: str) -> Bench:
    """Import time, MLP and CNN training samples/s, then matmul FLOP/s (for `dllab bench`)."""
    tf, import_s, s = begin("tensorflow", settings, deterministic)
    tf.random.set_seed(0)
    (c1, c2), hidden, image = s["channels"], s["hidden"], s["image"]

    def cnn(p, X):
        h = tf.reshape(X, (-1, image, image, 1))
        for w, b in (p[0:2], p[2:4]):
            h = tf.nn.max_pool2d(tf.nn.relu(tf.nn.conv2d(h, w, 1, "VALID") + b), 2, 2, "VALID")
        return tf.reshape(h, (-1, s["cnn_flat"])) @ p[4] + p[5]

    def train(forward, params: list) -> Rate:
        # a traced graph, as TF code meant to be fast is written
        step = tf.function(lambda: sgd_step(forward, params, X, y, s["lr"]))
        return measure(step, lambda loss: loss.numpy(), s["batch"], s)

    def matmul(dtype: str) -> Rate:
        # TF's default is TF32 on Ampere and later: off, unless TF32 is what is measured
        tf.config.experimental.enable_tensor_float_32_execution(dtype == "tfloat32")
        kind = tf.float32 if dtype == "tfloat32" else tf.as_dtype(dtype)
        a, b = (tf.cast(tf.random.normal((n, n)), kind) for _ in range(2))
        return measure(lambda: a @ b, lambda c: c[0, 0].numpy(), 2 * n**3, s["matmul_repeats"])

    n = s["n"]
    with tf.device(TF_DEVICES[accelerator]):
        X, y = (tf.constant(a) for a in toy_data(s["batch"], image**2))
        # Training first: its first step is then the real first step after import.
        results: Measurements = {
            "mlp": train(
                functools.partial(dense, tf.nn.relu),
                layers((X.shape[1], hidden), (hidden, hidden), (hidden, s["classes"])),
            ),
            "cnn": train(cnn, layers((3, 3, 1, c1), (3, 3, c1, c2), (s["cnn_flat"], s["classes"]))),
            "matmul": per_dtype(s, matmul),
        }
    gpus = tf.config.list_physical_devices("GPU")
    return {
        "version": tf.__version__,
        "device": X.device,
        "device_kind": device_kind(X.device),
        "device_name": tf.config.experimental.get_device_details(gpus[0]).get("device_name")
        if gpus and accelerator != "cpu"
        else None,
        "import_s": import_s,
        **results,
    }
