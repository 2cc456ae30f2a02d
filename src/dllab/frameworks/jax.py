"""JAX: what it sees, and a few real training steps on the promised device."""

from __future__ import annotations

from dllab.frameworks import HIDDEN, LR, STEPS, device_kind, toy_data


def probe() -> dict:
    import jax
    import jaxlib

    devices = [
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


def train(accelerator: str = "cpu") -> dict:
    import jax
    import jax.numpy as jnp

    platform = {"cpu": "cpu", "cuda": "gpu", "mps": "METAL"}[accelerator]
    device = jax.devices(platform)[0]
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
