"""JAX: what it sees, and a few real training steps on the promised device."""

from __future__ import annotations

import contextlib
import functools
import os

from dllab.frameworks import HIDDEN, LR, STEPS, dense, device_kind, fan_in_scale, toy_data
from dllab.frameworks.plugin import Bench, DeviceSeen, Measurements, Probe, Rate, Training
from dllab.frameworks.timing import begin, measure, per_dtype

# The JAX platform each accelerator is (jax-metal calls Apple's GPU "METAL").
JAX_PLATFORMS = {"cpu": "cpu", "cuda": "gpu", "mps": "METAL"}
# XLA's GPU switch for reproducible reductions and autotuning; XLA on the CPU repeats already.
DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"


def probe() -> Probe:
    import jax
    import jaxlib

    devices: list[DeviceSeen] = [
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


def deterministic() -> None:
    """XLA's deterministic GPU ops; read when the first backend starts, so call it before that."""
    flags = os.environ.get("XLA_FLAGS", "")
    if DETERMINISTIC_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {DETERMINISTIC_FLAG}".strip()


def sgd(forward, lr: float):
    """A jitted SGD step for `forward(params, X)` logits: (params, X, y) -> (new params, loss)."""
    import jax
    import jax.numpy as jnp

    def loss_fn(params, X, y):
        y_hat = forward(params, X)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(y_hat), y[:, None], axis=1))

    @jax.jit
    def step(params, X, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, X, y)
        return [p - lr * g for p, g in zip(params, grads, strict=True)], loss

    return step


def layers(keys, *shapes: tuple[int, ...]) -> list:
    """[weight, bias] for each shape: normal weights scaled by 1/sqrt(fan-in), zero biases."""
    import jax
    import jax.numpy as jnp

    params = []
    for shape in shapes:
        params += [jax.random.normal(next(keys), shape) * fan_in_scale(shape), jnp.zeros(shape[-1])]
    return params


def train(accelerator: str = "cpu") -> Training:
    deterministic()
    import jax

    device = jax.devices(JAX_PLATFORMS[accelerator])[0]
    X, y = (jax.device_put(a, device) for a in toy_data())
    keys = iter(jax.random.split(jax.random.key(0), 2))
    params = jax.device_put(layers(keys, (X.shape[1], HIDDEN), (HIDDEN, 2)), device)
    before = params[0]
    step = sgd(functools.partial(dense, jax.nn.relu), LR)
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
    jax, import_s, s = begin("jax", settings, deterministic)
    jnp = jax.numpy
    (c1, c2), hidden, image = s["channels"], s["hidden"], s["image"]
    device = jax.devices(JAX_PLATFORMS[accelerator])[0]
    keys = iter(jax.random.split(jax.random.key(0), 16))
    X, y = (jax.device_put(a, device) for a in toy_data(s["batch"], image**2))

    def cnn(p, X):
        h = X.reshape(-1, image, image, 1)
        for w, b in (p[0:2], p[2:4]):
            h = jax.lax.conv_general_dilated(
                h, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            h = jax.nn.relu(h + b)
            h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        return h.reshape(h.shape[0], -1) @ p[4] + p[5]

    def train(forward, params: list) -> Rate:
        update = sgd(forward, s["lr"])
        state = [jax.device_put(params, device)]

        def step():
            state[0], loss = update(state[0], X, y)
            return loss

        return measure(step, jax.block_until_ready, s["batch"], s)

    def matmul(dtype: str) -> Rate:
        kind = jnp.float32 if dtype == "tfloat32" else jnp.dtype(dtype)
        a, b = (
            jax.device_put(jax.random.normal(next(keys), (n, n), kind), device) for _ in range(2)
        )
        product = jax.jit(jnp.matmul)
        # Fixed when jit traces (the first call, inside measure): strict float32 unless TF32 is
        # measured. Set for float32 inputs only: asking bfloat16 or float16 for float32
        # precision could make XLA compute them in float32.
        precision = {"float32": "float32", "tfloat32": "tensorfloat32"}.get(dtype)
        with jax.default_matmul_precision(precision) if precision else contextlib.nullcontext():
            return measure(
                lambda: product(a, b), jax.block_until_ready, 2 * n**3, s["matmul_repeats"]
            )

    n = s["n"]
    # Training first: its first step is then the real first step after import.
    results: Measurements = {
        "mlp": train(
            functools.partial(dense, jax.nn.relu),
            layers(keys, (X.shape[1], hidden), (hidden, hidden), (hidden, s["classes"])),
        ),
        "cnn": train(
            cnn, layers(keys, (3, 3, 1, c1), (3, 3, c1, c2), (s["cnn_flat"], s["classes"]))
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
