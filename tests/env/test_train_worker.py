"""dllab.train_worker as one plain process in this environment: the loss after each epoch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dllab.frameworks import FRAMEWORKS, RESULT, Target

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_each_epochs_loss_is_reported_and_falls(framework):
    """One loss per epoch, each lower than the last, the last the final loss (not a shared buffer)."""
    if not Target.parse(framework).installed():
        pytest.skip(f"{framework} is not installed here")
    proc = subprocess.run(
        [sys.executable, "-m", "dllab.train_worker", "--framework", framework, "--epochs", "3"]
        + ["--samples", "512", "--global-batch", "32"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [line] = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    result = json.loads(line.removeprefix(RESULT))
    losses = result["epoch_losses"]
    assert len(losses) == 3 and losses[-1] == result["loss"]
    assert result["initial_loss"] > losses[0] > losses[1] > losses[2], losses
