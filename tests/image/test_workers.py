"""`python -m dllab.workers` against a real engine: 2 workers in 2 containers of dllab:cpu per framework.

The code under test is what the image ships (`dllab.train_worker` installed in it), started
the way `invoke train` starts it: `python -m dllab.workers` in a subprocess.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dllab import workers
from tests.support import missing

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SRC = Path(__file__).resolve().parents[2] / "src"
FRAMEWORKS = ("torch", "tensorflow", "keras-jax")
# Why 1e-5: N workers compute the same global-batch gradient as one worker, but float32 sums it
# in another order (each shard's sum, then the all-reduce), so every step may differ by a few
# float32 ulps (~1e-7 relative). Over the run's 96 SGD steps that stays far below 1e-5 (measured:
# ~1e-8), while any real mistake (a wrong shard, a gradient summed instead of averaged, a
# missed all-reduce) moves the final loss by more than 1e-2.
RTOL = 1e-5
TWO_WORKERS: dict[str, dict] = {}  # framework -> each rank's result of the first 2-worker run
LINE = re.compile(r"^rank (\d+): loss ([\d.]+) -> ([\d.]+)\s+weights (\w+)\s+\|w\| ([\d.]+)", re.M)


@pytest.fixture(scope="module")
def image(cpu_image, client):
    """dllab:cpu (or $DLLAB_WORKERS_IMAGE, an image made from it), if it ships dllab.train_worker."""
    tag = os.environ.get("DLLAB_WORKERS_IMAGE") or cpu_image
    out = subprocess.run(
        ["docker", "run", "--rm", "--user", "1000:1000", "--entrypoint", "python", tag,
         "-c", "import dllab.train_worker"],
        capture_output=True, text=True,
    )  # fmt: skip
    if out.returncode != 0:
        missing("image-cpu", f"{tag} predates dllab.train_worker: rebuild it (`invoke build`)")
    return tag


def command(image: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "dllab.workers", "--variant", "cpu", "--image", image, *args]


def environment() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    env.pop("DLLAB_WORKERS_SRC", None)  # the image's own code, never a mounted tree
    return env


def train(image: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run it; past `timeout`, stop it with SIGTERM (it removes its containers) and fail."""
    cmd = command(image, *args)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=environment()) as proc:  # fmt: skip
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            out, err = proc.communicate(timeout=60)
            pytest.fail(f"still running after {timeout:.0f} s, stopped:\n{out}{err}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def ranks(stdout: str) -> dict[int, dict]:
    return {
        int(m[1]): {
            "initial": float(m[2]),
            "loss": float(m[3]),
            "digest": m[4],
            "norm": float(m[5]),
        }
        for m in LINE.finditer(stdout)
    }


def leftovers(run: str) -> list[str]:
    found = []
    for cmd in (
        ["docker", "ps", "--all", "--quiet", "--filter", f"label={workers.RUN_LABEL}={run}"],
        ["docker", "network", "ls", "--quiet", "--filter", f"label={workers.RUN_LABEL}={run}"],
    ):
        found += subprocess.run(cmd, capture_output=True, text=True).stdout.split()
    return found


def network_of(stdout: str) -> str:
    return re.search(r"on network (\S+)", stdout)[1]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_two_workers_agree_learn_and_match_one_worker(framework, image):
    """2 containers end with identical weights, the loss falls, and 2 workers == 1 worker on the same global batch."""
    two = train(image, "--workers", "2", "--framework", framework, "--epochs", "3")
    assert two.returncode == 0, two.stdout + two.stderr
    got = ranks(two.stdout)
    assert sorted(got) == [0, 1], two.stdout
    assert got[0]["digest"] == got[1]["digest"]
    assert "workers agree: 2 workers" in two.stdout.splitlines()[-1]
    assert got[0]["loss"] < 0.7 * got[0]["initial"], "the loss did not fall"
    assert leftovers(network_of(two.stdout)) == []
    TWO_WORKERS[framework] = got  # run again by the next test

    one = train(image, "--workers", "1", "--framework", framework, "--epochs", "3")
    assert one.returncode == 0, one.stdout + one.stderr
    alone = ranks(one.stdout)[0]
    assert alone["initial"] == got[0]["initial"]
    assert alone["loss"] == pytest.approx(got[0]["loss"], rel=RTOL)
    assert alone["norm"] == pytest.approx(got[0]["norm"], rel=RTOL)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_two_workers_run_again_end_with_the_same_bits(framework, image):
    """The same run again (same seed, same image) ends with the same loss and weights, bit for bit."""
    first = TWO_WORKERS.get(framework)
    if first is None:
        pytest.skip("the first run of this framework did not pass (the test above)")
    again = train(image, "--workers", "2", "--framework", framework, "--epochs", "3")
    assert again.returncode == 0, again.stdout + again.stderr
    assert ranks(again.stdout) == first


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_killed_worker_stops_the_run_within_30_s_and_leaves_nothing(framework, image):
    """docker kill of worker 1 mid-run: non-zero exit within 30 s, one line naming it, nothing left."""
    proc = subprocess.Popen(
        command(image, "--workers", "2", "--framework", framework, "--epochs", "1000"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(),
    )  # fmt: skip
    lines: list[str] = []
    started = threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            if line.strip().startswith("epoch 2/"):
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(180), "".join(lines)
        run = network_of("".join(lines))
        subprocess.run(["docker", "kill", f"{run}-w1"], check=True, capture_output=True)
        killed = time.monotonic()
        code = proc.wait(timeout=60)
        elapsed = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read()
    assert code == 1, stderr
    assert elapsed < 30, f"took {elapsed:.0f} s to stop"
    named = [line for line in stderr.splitlines() if line.startswith("dllab: worker")]
    assert named == [stderr.strip().splitlines()[-1]]
    assert named[0].startswith(f"dllab: worker 1 of 2 ({run}-w1) failed with exit code 137")
    assert leftovers(run) == []


# --- Keras `fit` under MultiWorkerMirroredStrategy: broken upstream ----------------------------

FIT_WORKER = """
import json, os, sys
rank = int(sys.argv[1])
os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": ["127.0.0.1:23471", "127.0.0.1:23472"]},
                                      "task": {"type": "worker", "index": rank}})
os.environ["KERAS_BACKEND"] = "tensorflow"
import numpy as np, tensorflow as tf, keras
strategy = tf.distribute.MultiWorkerMirroredStrategy()
rng = np.random.default_rng(0)
X = rng.normal(size=(256, 8)).astype("float32"); y = (X.sum(axis=1) > 0).astype("int64")
with strategy.scope():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(tf.data.Dataset.from_tensor_slices((X, y)).batch(32), epochs=1, verbose=0)
print("fit ok", rank)
"""
FIT_DRIVER = f"""
import subprocess, sys
procs = [subprocess.Popen([sys.executable, "-c", {FIT_WORKER!r}, str(r)]) for r in range(2)]
codes = []
for p in procs:
    try:
        codes.append(p.wait(timeout=240))
    except subprocess.TimeoutExpired:
        p.kill(); codes.append("timeout")
print("codes", codes)
"""


class KnownUpstreamFailure(Exception):
    """keras-team/keras#20585: fit under MWMS converts a PerReplica to a Tensor and fails."""


@pytest.mark.xfail(
    raises=KnownUpstreamFailure,
    strict=True,
    reason="keras-team/keras#20585: Keras 3 model.fit under TF MultiWorkerMirroredStrategy with 2 "
    "workers fails (PerReplica ... to a Tensor); dllab uses a custom TF loop. When this XPASSes, "
    "upstream fixed it: switch lab 07 and train_worker to fit, and drop this test.",
)
def test_keras_fit_under_multi_worker_mirrored_strategy(image, containers):
    code, logs = containers.output(
        image, ["-c", FIT_DRIVER], entrypoint="python", user="1000:1000", cap_drop=["ALL"],
        security_opt=["no-new-privileges"], environment={"TF_CPP_MIN_LOG_LEVEL": "2", "HOME": "/tmp"},
        network_mode="none", timeout=600,
    )  # fmt: skip
    if "PerReplica" in logs and "to a Tensor" in logs:
        raise KnownUpstreamFailure(logs[-500:])
    assert code == 0 and "codes [0, 0]" in logs, logs[-3000:]
