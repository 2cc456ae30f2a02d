"""`invoke train` never outlives its terminal: a closed terminal (SIGHUP), Ctrl-C (SIGINT, to
invoke alone or to its process group) and SIGTERM each stop and remove every worker and the run's
network within 10 s; the start-up deadline covers start-up only; `invoke clean` finds what a
killed run left behind. A real 2-worker torch run in dllab:cpu each time."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from dllab import containers, runner, workers
from dllab.variants import ROOT

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def instance(cpu_image, tmp_path):
    """An instance and state folder of this test's own: nothing of yours is touched."""
    return {
        "DLLAB_INSTANCE": f"sig-{uuid.uuid4().hex[:6]}",
        "DLLAB_STATE": str(tmp_path / "state"),
        "PYTHONUNBUFFERED": "1",
    }


def by_run(network: str) -> list[str]:
    return ["--filter", f"label={workers.RUN_LABEL}={network}"]


def left(network: str) -> list[str]:
    """The run's containers and networks still on the engine."""
    run, label = runner.Runner(), by_run(network)
    return run(containers.list_command(label)).out.split() + run(containers.networks_command(label)).out.split()  # fmt: skip


class Training:
    """`invoke train --workers 2` in a session of its own (invoke leads its process group), its
    output read line by line."""

    def __init__(self, env: dict[str, str], *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "invoke", "-r", str(ROOT), "train", "--workers", "2",
             "--framework", "torch", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            env={**os.environ, **env},
            # as from a terminal: a suite started in the background (`cmd &` in a script) inherits
            # SIGINT ignored, and Python then keeps ignoring it, as shells' background jobs do
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        self.lines: list[str] = []
        self.epoch = threading.Event()
        threading.Thread(target=self.read, daemon=True).start()

    def read(self) -> None:
        assert self.proc.stdout is not None
        with contextlib.suppress(ValueError, OSError):  # the test closed the pipe (SIGHUP)
            for line in self.proc.stdout:
                self.lines.append(line)
                if line.strip().startswith("epoch 1/"):
                    self.epoch.set()

    @property
    def network(self) -> str:
        return re.search(r"on network (\S+)", "".join(self.lines))[1]

    def close(self) -> None:
        """Kill it if it still runs, and remove what its run left: a failed test leaves nothing."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        if match := re.search(r"on network (\S+)", "".join(self.lines)):
            run, label = runner.Runner(), by_run(match[1])
            if ids := run(containers.list_command(label)).out.split():
                run(containers.remove_command(*ids))
            if ids := run(containers.networks_command(label)).out.split():
                run(containers.remove_networks_command(*ids))


STARTUP = 30  # DLLAB_TRAIN_STARTUP_TIMEOUT of the SIGTERM run: it must train on past it


@pytest.mark.parametrize("how", ["SIGHUP", "SIGINT to invoke", "SIGINT to its group", "SIGTERM"])
def test_each_signal_stops_and_removes_the_workers_and_network_within_10_s(how, instance):
    """After the first epoch, the signal; 10 s later no worker and no network of the run is left,
    and invoke has ended (SIGHUP: the terminal is gone, so nothing can be printed any more). The
    SIGTERM run has a 30 s start-up deadline and is still training 35 s in: the deadline covers
    start-up only."""
    env = {
        **instance,
        **({"DLLAB_TRAIN_STARTUP_TIMEOUT": str(STARTUP)} if how == "SIGTERM" else {}),
    }
    launched = time.monotonic()
    training = Training(env, "--epochs", "1000")
    try:
        assert training.epoch.wait(240), "".join(training.lines)
        network = training.network
        assert len(left(network)) == 3  # two workers and the network
        if how == "SIGTERM":
            time.sleep(max(0.0, launched + STARTUP + 5 - time.monotonic()))
            assert training.proc.poll() is None, "".join(training.lines)
        pid, sig = training.proc.pid, getattr(signal, how.split()[0])
        if how == "SIGHUP":
            os.kill(pid, sig)
            training.proc.stdout.close()  # the terminal is gone: every write fails from now on
        elif how.endswith("group"):
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
        sent = time.monotonic()
        while left(network) and time.monotonic() - sent < 10:
            time.sleep(0.2)
        assert left(network) == [], f"{how}: still there after 10 s"
        assert training.proc.wait(timeout=max(1.0, 10 - (time.monotonic() - sent))) != 0
    finally:
        training.close()


def test_clean_finds_what_a_killed_run_left(instance):
    """SIGKILL leaves no chance to clean up: the workers run on. `invoke clean` (this checkout and
    instance) removes them and the run's network, by their labels."""
    training = Training(instance, "--epochs", "1000")
    try:
        assert training.epoch.wait(240), "".join(training.lines)
        network = training.network
        os.killpg(training.proc.pid, signal.SIGKILL)
        training.proc.wait(timeout=10)
        assert len(left(network)) == 3
        cleaned = subprocess.run(
            [sys.executable, "-m", "invoke", "-r", str(ROOT), "clean", "--variant", "cpu"],
            capture_output=True, text=True, timeout=120, env={**os.environ, **instance},
        )  # fmt: skip
        assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
        assert left(network) == []
    finally:
        training.close()
