"""JAX: what it sees, and a few real training steps on the promised device."""

from __future__ import annotations

from dllab.frameworks import HIDDEN, LR, STEPS, device_kind, toy_data
from dllab.frameworks.plugin import Bench, Device, Measurements, Probe, Settings, Timing, Training
from dllab.frameworks.timing import measure, per_dtype

# The JAX platform each accelerator is (jax-metal calls Apple's GPU "METAL").
JAX_PLATFORMS = {"cpu": "cpu", "cuda": "gpu", "mps": "METAL"}


def probe() -> Probe:
    import jax
    import jaxlib

    devices: list[Device] = [
        {"name": str(d), "kind": device_kind(d.platform), "model": d.device_kind}
        for d in jax.devices()
    ]
    if jax.default_backend() != "cpu":  # jax.devices() lists only the default backend
        devices.insert(0, {"name": str(jax.devices("cpu")[0]), "kind": "cpu"})
    return {
        "version": jax.__version__,
        "build": {"jaxlib": jaxlib.__version__, "backend": jax.default_backend()},
        "devices": devices,
    }


def train(accelerator: str = "cpu") -> Training:
    import jax
    import jax.numpy as jnp

    device = jax.devices(JAX_PLATFORMS[accelerator])[0]
    X, y = (jax.device_put(a, device) for a in toy_data())
    k1, k2 = jax.random.split(jax.random.key(0))
    params = jax.device_put(
        [
            jax.random.normal(k1, (X.shape[1], HIDDEN)) * 0.1,
            jnp.zeros(HIDDEN),
            jax.random.normal(k2, (HIDDEN, 2)) * 0.1,
            jnp.zeros(2),
        ],
        device,
    )
    before = params[0]

    def loss_fn(params, X, y):
        hidden = jax.nn.relu(X @ params[0] + params[1])
        y_hat = hidden @ params[2] + params[3]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(y_hat), y[:, None], axis=1))

    @jax.jit
    def step(params, X, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, X, y)
        return [p - LR * g for p, g in zip(params, grads, strict=True)], loss

    losses = []
    for _ in range(STEPS):
        params, loss = step(params, X, y)
        losses.append(float(loss))
    where = next(iter(params[0].devices()))
    return {
        "device": str(where),
        "device_kind": device_kind(where.platform),
        "losses": losses,
        "params_changed": bool((params[0] != before).any()),
    }


def bench(accelerator: str, settings: str) -> Bench:
    """Import time, MLP and CNN training samples/s, then matmul FLOP/s (for `dllab bench`)."""
    import json
    import time

    start = time.perf_counter()
    import jax
    import jax.numpy as jnp

    import_s = time.perf_counter() - start

    s: Settings = json.loads(settings)
    (c1, c2), hidden, image = s["channels"], s["hidden"], s["image"]
    device = jax.devices(JAX_PLATFORMS[accelerator])[0]
    keys = iter(jax.random.split(jax.random.key(0), 16))
    X, y = (jax.device_put(a, device) for a in toy_data(s["batch"], image**2))

    def weights(*shape: int) -> list:
        fan_in = 1
        for size in shape[:-1]:
            fan_in *= size
        return [jax.random.normal(next(keys), shape) * fan_in**-0.5, jnp.zeros(shape[-1])]

    def mlp(p, X):
        hidden = jax.nn.relu(X @ p[0] + p[1])
        hidden = jax.nn.relu(hidden @ p[2] + p[3])
        return hidden @ p[4] + p[5]

    def cnn(p, X):
        h = X.reshape(-1, image, image, 1)
        for w, b in (p[0:2], p[2:4]):
            h = jax.lax.conv_general_dilated(
                h, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            h = jax.nn.relu(h + b)
            h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        return h.reshape(h.shape[0], -1) @ p[4] + p[5]

    def train(forward, params: list) -> Timing:
        def loss_fn(params, X, y):
            y_hat = forward(params, X)
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(y_hat), y[:, None], axis=1))

        @jax.jit
        def update(params, X, y):
            loss, grads = jax.value_and_grad(loss_fn)(params, X, y)
            return [p - s["lr"] * g for p, g in zip(params, grads, strict=True)], loss

        state = [jax.device_put(params, device)]

        def step():
            state[0], loss = update(state[0], X, y)
            return loss

        return measure(step, jax.block_until_ready, s["batch"], s)

    def matmul(dtype: str) -> Timing:
        kind = jnp.float32 if dtype == "tfloat32" else jnp.dtype(dtype)
        a, b = (
            jax.device_put(jax.random.normal(next(keys), (n, n), kind), device) for _ in range(2)
        )
        # The precision is fixed when jit traces: strict float32 unless TF32 is what is measured.
        with jax.default_matmul_precision("tensorfloat32" if dtype == "tfloat32" else "float32"):
            product = jax.jit(jnp.matmul)
            return measure(lambda: product(a, b), jax.block_until_ready, 2 * n**3, s)

    n = s["n"]
    # Training first: its first step is then the real first step after import.
    results: Measurements = {
        "mlp": train(
            mlp,
            weights(X.shape[1], hidden) + weights(hidden, hidden) + weights(hidden, s["classes"]),
        ),
        "cnn": train(
            cnn, weights(3, 3, 1, c1) + weights(3, 3, c1, c2) + weights(s["cnn_flat"], s["classes"])
        ),
        "matmul": per_dtype(s, matmul),
    }
    return {
        "version": jax.__version__,
        "device": str(device),
        "device_kind": device_kind(device.platform),
        "device_name": device.device_kind if accelerator != "cpu" else None,
        "import_s": import_s,
        **results,
    }
