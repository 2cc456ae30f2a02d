"""Keras 3 on the backend KERAS_BACKEND names: where it puts tensors, and a few real training steps."""

from __future__ import annotations

from dllab.frameworks import HIDDEN, LR, STEPS, device_kind, toy_data


def _where(tensor) -> str:
    """The device a backend tensor lives on, as the backend names it."""
    if hasattr(tensor, "devices"):  # jax.Array
        return str(next(iter(tensor.devices())).platform)
    return str(tensor.device)  # tf.Tensor: '/job:.../device:GPU:0'; torch.Tensor: cuda:0


def probe() -> dict:
    import keras

    where = _where(keras.ops.convert_to_tensor(keras.ops.ones((2, 2))))
    return {
        "version": keras.__version__,
        "build": {"backend": keras.backend.backend()},
        "devices": [{"name": where, "kind": device_kind(where)}],
    }


def train(accelerator: str = "cpu") -> dict:
    import keras

    X, y = toy_data()
    keras.utils.set_random_seed(0)
    net = keras.Sequential(
        [
            keras.Input((X.shape[1],)),
            keras.layers.Dense(HIDDEN, activation="relu"),
            keras.layers.Dense(2),
        ]
    )
    net.compile(
        optimizer=keras.optimizers.SGD(learning_rate=LR),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
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
