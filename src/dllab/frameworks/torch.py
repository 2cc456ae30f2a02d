"""PyTorch: what it sees, and a few real training steps on the promised device."""

from __future__ import annotations

from dllab.frameworks import HIDDEN, LR, STEPS, toy_data


def probe() -> dict:
    import torch

    devices = [{"name": "cpu", "kind": "cpu"}]
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


def train(accelerator: str = "cpu") -> dict:
    import torch

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
    losses = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = loss_fn(net(X), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())  # .item() also waits for the device to finish the step
    weight = net[0].weight
    return {
        "device": str(weight.device),
        "device_kind": weight.device.type,
        "losses": losses,
        "params_changed": bool((weight.detach() != before).any()),
    }
