"""PyTorch: what it sees, and a few real training steps on the promised device."""

from __future__ import annotations

import os

from dllab.frameworks import HIDDEN, LR, STEPS, toy_data
from dllab.frameworks.plugin import Bench, DeviceSeen, Probe, Rate, Training
from dllab.frameworks.timing import begin, measure, per_dtype


def probe() -> Probe:
    import torch

    devices: list[DeviceSeen] = [{"name": "cpu", "kind": "cpu"}]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(i)
            devices.append(
                {
                    "name": f"cuda:{i}",
                    "kind": "cuda",
                    "model": torch.cuda.get_device_name(i),
                    "capability": f"{major}.{minor}",
                }
            )
    if torch.backends.mps.is_available():
        devices.append({"name": "mps", "kind": "mps"})
    return {
        "version": torch.__version__,
        "build": {
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.version.cuda else None,
            "mps": torch.backends.mps.is_built(),
        },
        "devices": devices,
    }


def deterministic() -> None:
    """Deterministic kernels only (an op that has none raises), and a fixed cuBLAS workspace."""
    # cuBLAS reads this when it makes its first handle: with it, its GEMMs repeat bit for bit.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import torch

    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False  # benchmark mode may pick another kernel each run


def sgd_step(net, optimizer, loss_fn, X, y):
    """One step of plain SGD; the loss, still on the device."""
    optimizer.zero_grad()
    loss = loss_fn(net(X), y)
    loss.backward()
    optimizer.step()
    return loss


def train(accelerator: str = "cpu") -> Training:
    import torch

    deterministic()
    X, y = toy_data()
    torch.manual_seed(0)
    device = torch.device(accelerator)
    X, y = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
    net = torch.nn.Sequential(
        torch.nn.Linear(X.shape[1], HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 2)
    ).to(device)
    before = net[0].weight.detach().clone()
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    # .item() also waits for the device to finish the step
    losses = [sgd_step(net, optimizer, loss_fn, X, y).item() for _ in range(STEPS)]
    weight = net[0].weight
    return {
        "device": str(weight.device),
        "device_kind": weight.device.type,
        "losses": losses,
        "params_changed": bool((weight.detach() != before).any()),
    }


def bench(accelerator: str, settings: str) -> Bench:
    """Import time, MLP and CNN training samples/s, then matmul FLOP/s (for `dllab bench`)."""
    torch, import_s, s = begin("torch", settings, deterministic)
    nn = torch.nn
    torch.manual_seed(0)
    device = torch.device(accelerator)
    sync = {"cuda": torch.cuda.synchronize, "mps": torch.mps.synchronize}.get(accelerator)

    def wait(_) -> None:
        if sync:
            sync()

    X, y = toy_data(s["batch"], s["image"] ** 2)
    X, y = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)

    def train(net) -> Rate:
        net.to(device)
        optimizer = torch.optim.SGD(net.parameters(), lr=s["lr"])
        loss_fn = nn.CrossEntropyLoss()
        return measure(lambda: sgd_step(net, optimizer, loss_fn, X, y), wait, s["batch"], s)

    (c1, c2), hidden = s["channels"], s["hidden"]
    # Training first: its first step is then the real first step after import.
    mlp = train(
        nn.Sequential(
            nn.Linear(X.shape[1], hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, s["classes"]),
        )
    )
    cnn = train(
        nn.Sequential(
            nn.Unflatten(1, (1, s["image"], s["image"])),
            nn.Conv2d(1, c1, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(s["cnn_flat"], s["classes"]),
        )
    )

    def matmul(dtype: str) -> Rate:
        # torch's float32 matmul is strict by default; TF32 only when that is what is measured
        torch.backends.cuda.matmul.allow_tf32 = dtype == "tfloat32"
        kind = torch.float32 if dtype == "tfloat32" else getattr(torch, dtype)
        a, b = (torch.randn(n, n, device=device, dtype=kind) for _ in range(2))
        return measure(lambda: a @ b, wait, 2 * n**3, s["matmul_repeats"])

    n = s["n"]
    return {
        "version": torch.__version__,
        "device": str(X.device),
        "device_kind": X.device.type,
        "device_name": torch.cuda.get_device_name(device) if accelerator == "cuda" else None,
        "import_s": import_s,
        "mlp": mlp,
        "cnn": cnn,
        "matmul": per_dtype(s, matmul),
    }
