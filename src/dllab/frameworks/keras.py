"""Keras 3 on the backend KERAS_BACKEND names: where it puts tensors, and a few real training steps."""

from __future__ import annotations

import contextlib
import importlib
import os

from dllab.frameworks import HIDDEN, LR, STEPS, device_kind, toy_data
from dllab.frameworks.plugin import Bench, Measurements, Probe, Rate, Training
from dllab.frameworks.timing import begin, measure, per_dtype


def mlp(features: int, hidden: int, classes: int, depth: int = 2):
    """The Keras MLP all of dllab trains (labs, workers, doctor, bench): `depth` ReLU layers, then logits."""
    import keras

    return keras.Sequential(
        [
            keras.Input((features,)),
            *(keras.layers.Dense(hidden, activation="relu") for _ in range(depth)),
            keras.layers.Dense(classes),
        ]
    )


def compile_sgd(net, lr: float, momentum: float = 0.0, metrics: tuple[str, ...] = ()):
    """Compile `net` for plain (or momentum) SGD on integer labels and logits; return it."""
    import keras

    net.compile(
        optimizer=keras.optimizers.SGD(learning_rate=lr, momentum=momentum),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=list(metrics),
    )
    return net


def deterministic() -> None:
    """The backend's switches: Keras has none of its own beyond keras.utils.set_random_seed."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    importlib.import_module(f"dllab.frameworks.{backend}").deterministic()


def _where(tensor) -> str:
    """The device a backend tensor lives on, as the backend names it."""
    if hasattr(tensor, "devices"):  # jax.Array
        return str(next(iter(tensor.devices())).platform)
    return str(tensor.device)  # tf.Tensor: '/job:.../device:GPU:0'; torch.Tensor: cuda:0


def probe() -> Probe:
    import keras

    where = _where(keras.ops.convert_to_tensor(keras.ops.ones((2, 2))))
    return {
        "version": keras.__version__,
        "build": {"backend": keras.backend.backend()},
        "devices": [{"name": where, "kind": device_kind(where)}],
    }


def train(accelerator: str = "cpu") -> Training:
    deterministic()
    import keras

    X, y = toy_data()
    keras.utils.set_random_seed(0)
    net = compile_sgd(mlp(X.shape[1], HIDDEN, 2, depth=1), LR)
    before = keras.ops.convert_to_numpy(net.weights[0].value).copy()
    losses = [float(net.train_on_batch(X, y)) for _ in range(STEPS)]
    where = _where(net.weights[0].value)
    return {
        "device": where,
        "device_kind": device_kind(where),
        "losses": losses,
        "params_changed": bool((keras.ops.convert_to_numpy(net.weights[0].value) != before).any()),
        "backend": keras.backend.backend(),
    }


def bench(accelerator: str, settings: str) -> Bench:
    """Import time, MLP and CNN training samples/s, then matmul FLOP/s (for `dllab bench`)."""
    keras, import_s, s = begin("keras", settings, deterministic)
    backend = keras.backend.backend()
    keras.utils.set_random_seed(0)
    (c1, c2), hidden, image = s["channels"], s["hidden"], s["image"]
    layers = keras.layers

    def train(net) -> Rate:
        compile_sgd(net, s["lr"])
        # train_on_batch returns the loss as a Python float: each step is already synchronised.
        return measure(lambda: net.train_on_batch(X, y), lambda _: None, s["batch"], s)

    def matmul(dtype: str) -> Rate:
        # Strict float32 unless TF32 is what is measured, set where the backend decides it;
        # bfloat16 and float16 keep the backend's own precision.
        tf32 = dtype == "tfloat32"
        precision = contextlib.nullcontext()
        if backend == "tensorflow":
            import tensorflow as tf

            tf.config.experimental.enable_tensor_float_32_execution(tf32)
        elif backend == "torch":
            import torch

            torch.backends.cuda.matmul.allow_tf32 = tf32
        elif backend == "jax" and dtype in ("float32", "tfloat32"):
            import jax

            precision = jax.default_matmul_precision("tensorfloat32" if tf32 else "float32")
        kind = "float32" if tf32 else dtype
        a, b = (keras.random.normal((n, n), dtype=kind, seed=seed) for seed in (1, 2))
        with precision:
            return measure(
                lambda: keras.ops.matmul(a, b),
                # via float32: NumPy has no bfloat16 of its own
                lambda c: keras.ops.convert_to_numpy(keras.ops.cast(c[0, 0], "float32")),
                2 * n**3,
                s["matmul_repeats"],
            )

    n = s["n"]
    # Keras puts tensors on the backend's GPU by itself; on cpu, hold it there even if one exists
    # (not on torch: Keras 3.15 loses its gradients inside keras.device; the parent checks where).
    pin = accelerator == "cpu" and backend != "torch"
    with keras.device("cpu:0") if pin else contextlib.nullcontext():
        X, y = (keras.ops.convert_to_tensor(a) for a in toy_data(s["batch"], image**2))
        # Training first: its first step is then the real first step after import.
        results: Measurements = {
            "mlp": train(mlp(X.shape[1], hidden, s["classes"])),
            "cnn": train(
                keras.Sequential(
                    [
                        keras.Input((X.shape[1],)),
                        layers.Reshape((image, image, 1)),
                        layers.Conv2D(c1, 3, activation="relu"),
                        layers.MaxPooling2D(2),
                        layers.Conv2D(c2, 3, activation="relu"),
                        layers.MaxPooling2D(2),
                        layers.Flatten(),
                        layers.Dense(s["classes"]),
                    ]
                )
            ),
            "matmul": per_dtype(s, matmul),
        }
        where = _where(X)
    return {
        "version": keras.__version__,
        "backend": backend,
        "backend_version": importlib.import_module(backend).__version__,
        "device": where,
        "device_kind": device_kind(where),
        "device_name": None,
        "import_s": import_s,
        **results,
    }
