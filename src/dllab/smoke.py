"""One real training step per framework on the promised device, judged from what it reports."""

from __future__ import annotations

from dllab.devices import run_child
from dllab.frameworks import Target


def train(target: Target, accelerator: str) -> dict:
    """Train `target` for a few steps on `accelerator` in a fresh process; add its failures."""
    result = run_child(target, "train", accelerator)
    result["failures"] = failures(result, accelerator)
    return result


def failures(result: dict, accelerator: str) -> list[str]:
    """What is wrong with a training run: an error, the wrong device, a loss that did not fall."""
    if result.get("error"):
        return [result["error"]]
    found = []
    if result["device_kind"] != accelerator:
        found.append(
            f"trained on {result['device']} ({result['device_kind']}), not on {accelerator}"
        )
    losses = result["losses"]
    if not losses[-1] < losses[0]:
        found.append(f"loss did not fall: {losses[0]:.4f} -> {losses[-1]:.4f}")
    if not result["params_changed"]:
        found.append("parameters did not change")
    return found
