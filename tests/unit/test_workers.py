"""dllab.workers without an engine: the docker argument lists, bad input, the verdict, the GPU path (with fakes)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dllab import accounts, containers, runner, train_worker, workers
from dllab.errors import UserError

SRC = Path(__file__).resolve().parents[2] / "src"


OWNER = containers.Owner(1234, 1235)
NETWORK = f"dllab-train-abc123-1234-{containers.checkout_id()}"


@pytest.fixture(autouse=True)
def no_instance(monkeypatch):
    monkeypatch.delenv("DLLAB_INSTANCE", raising=False)


def plan(framework="torch", n=2, **kw):
    kw.setdefault("owner", OWNER)
    kw.setdefault("token", "abc123")
    kw.setdefault("cores", 2)
    return workers.make_plan(kw.pop("variant", "cpu"), framework, n, 3, **kw)


def env_of(cmd: list[str]) -> dict[str, str]:
    return dict(cmd[i + 1].split("=", 1) for i, a in enumerate(cmd) if a == "--env")


def after_image(cmd: list[str], image="dllab:cpu") -> list[str]:
    return cmd[cmd.index(image) + 1 :]


# --- argument lists ---------------------------------------------------------------------------


def test_network_is_private_named_and_labelled_per_run():
    """The run's network: named and labelled by owner, checkout and instance, internal."""
    p = plan()
    assert p.network == NETWORK
    cmd = workers.network_command(p)
    assert cmd[:3] == ["docker", "network", "create"] and cmd[-1] == p.network
    assert "--internal" in cmd and "dllab.role=worker" in cmd
    assert "dllab.owner=1234" in cmd and f"dllab.run={p.network}" in cmd
    assert f"dllab.checkout={containers.checkout_id()}" in cmd and "dllab.instance=" in cmd


def test_run_ids_differ_between_runs():
    assert workers.run_id(OWNER) != workers.run_id(OWNER)


@pytest.mark.parametrize("framework", workers.FRAMEWORKS)
def test_every_worker_runs_non_root_without_capabilities_on_the_run_network(framework):
    p = plan(framework)
    for rank in range(2):
        cmd = workers.worker_command(p, rank)
        assert all(isinstance(a, str) for a in cmd), "an argument list, never a shell string"
        assert cmd[:2] == ["docker", "run"]
        assert cmd[cmd.index("--user") + 1] == "1234:1235"
        assert cmd[cmd.index("--cap-drop") + 1] == "ALL"
        assert cmd[cmd.index("--security-opt") + 1] == "no-new-privileges"
        assert cmd[cmd.index("--shm-size") + 1] == containers.SHM_SIZE
        assert cmd[cmd.index("--network") + 1] == p.network
        assert cmd[cmd.index("--name") + 1] == f"{p.network}-w{rank}"
        assert "dllab.owner=1234" in cmd and f"dllab.run={p.network}" in cmd
        assert "--privileged" not in cmd and "root" not in cmd
        assert "-m" in after_image(cmd) and "dllab.train_worker" in after_image(cmd)
        assert env_of(cmd)["OMP_NUM_THREADS"] == "1"  # 2 cores shared by 2 workers


def test_plain_root_runs_the_workers_as_an_id_no_account_has(monkeypatch):
    """Root without sudo: the workers run as a UID of dllab's own, never root, never UID 1000."""
    monkeypatch.setattr(containers.os, "getuid", lambda: 0)
    monkeypatch.delenv("SUDO_UID", raising=False)
    cmd = workers.worker_command(workers.make_plan("cpu", "torch", 2, 1), 0)
    uid, gid = cmd[cmd.index("--user") + 1].split(":")
    assert uid == gid and int(uid) in accounts.ROOT_LAB and not accounts.is_account(int(uid))


def test_torch_workers_use_torchrun_with_an_explicit_master_address():
    p = plan("torch", 3, cores=2)
    for rank in range(3):
        cmd = workers.worker_command(p, rank)
        assert cmd[cmd.index("--entrypoint") + 1] == "torchrun"
        args = after_image(cmd)
        assert "--standalone" not in args
        assert args[args.index("--master-addr") + 1] == f"{p.network}-w0"
        assert args[args.index("--nnodes") + 1] == "3"
        assert args[args.index("--node-rank") + 1] == str(rank)
        assert args[args.index("--nproc-per-node") + 1] == "1"
        assert args[args.index("-m") + 1] == "dllab.train_worker"


def test_tensorflow_workers_get_one_tf_config_each():
    p = plan("tensorflow", 2)
    configs = [json.loads(env_of(workers.worker_command(p, r))["TF_CONFIG"]) for r in range(2)]
    hosts = [f"{p.network}-w0:{workers.TF_PORT}", f"{p.network}-w1:{workers.TF_PORT}"]
    assert [c["cluster"]["worker"] for c in configs] == [hosts, hosts]
    assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in range(2)]


def test_keras_jax_workers_name_the_coordinator_for_keras_distribution_initialize():
    p = plan("keras-jax", 2)
    for rank in range(2):
        env = env_of(workers.worker_command(p, rank))
        assert env["KERAS_DISTRIBUTION_JOB_ADDRESSES"].split(",")[0] == f"{p.network}-w0:1234"
        assert env["KERAS_DISTRIBUTION_NUM_PROCESSES"] == "2"
        assert env["KERAS_DISTRIBUTION_PROCESS_ID"] == str(rank)


@pytest.mark.parametrize("framework", workers.FRAMEWORKS)
def test_one_worker_is_a_plain_process(framework):
    cmd = workers.worker_command(plan(framework, 1), 0)
    assert cmd[cmd.index("--entrypoint") + 1] == "python"
    env = env_of(cmd)
    assert "TF_CONFIG" not in env and "KERAS_DISTRIBUTION_NUM_PROCESSES" not in env
    assert env["OMP_NUM_THREADS"] == "2"


def test_cleanup_removes_exactly_the_run_containers_then_its_network():
    p = plan("torch", 3)
    rm, net = workers.remove_commands(p)
    assert rm == ["docker", "rm", "--force"] + [f"{p.network}-w{r}" for r in range(3)]
    assert net == ["docker", "network", "rm", p.network]


def test_cpu_workers_hide_gpus_and_say_so():
    env = env_of(workers.worker_command(plan(), 0))
    assert env["DLLAB_DEVICE"] == "cpu" and env["CUDA_VISIBLE_DEVICES"] == ""


# --- the cuda path, with fakes ----------------------------------------------------------------


def test_cuda_with_enough_gpus_gives_each_worker_its_own_gpu():
    p = plan("torch", 2, variant="cuda", gpus_here=("0", "1", "2"))
    assert p.image == "dllab:cuda" and p.gpus == ("0", "1")
    for rank in range(2):
        cmd = workers.worker_command(p, rank)
        assert cmd[cmd.index("--gpus") + 1] == f'"device={rank}"'  # one CSV field for docker
        assert "DLLAB_DEVICE" not in env_of(cmd)


def test_cuda_without_gpus_trains_on_the_cpu():
    p = plan("tensorflow", 2, variant="cuda", gpus_here=())
    assert p.gpus == ()
    assert "--gpus" not in workers.worker_command(p, 0)


def test_more_gpu_workers_than_gpus_is_refused():
    with pytest.raises(UserError, match="4 GPU workers need 4 GPUs, this machine has 2"):
        plan("torch", 4, variant="cuda", gpus_here=("0", "1"))


def test_torch_worker_picks_nccl_on_its_gpu_and_gloo_on_the_cpu():
    assert train_worker.torch_backend(True, {"LOCAL_RANK": "0"}) == ("nccl", "cuda:0")
    assert train_worker.torch_backend(True, {"LOCAL_RANK": "0", "DLLAB_DEVICE": "cpu"}) == (
        "gloo",
        "cpu",
    )
    assert train_worker.torch_backend(False, {}) == ("gloo", "cpu")
    assert train_worker.tf_communication(1) == "NCCL" and train_worker.tf_communication(0) == "RING"


# --- verdict, results, failures ---------------------------------------------------------------


def result(rank, digest="aa", loss=0.5, world=2):
    return dict(rank=rank, world=world, digest=digest, loss=loss)


def test_verdict_agree_and_differ():
    assert workers.verdict([result(0), result(1)]) == (True, "workers agree: 2 workers, weights aa")
    agree, line = workers.verdict([result(0), result(1, digest="bb")])
    assert not agree and line == "workers differ: rank 1 weights bb != rank 0 aa"
    agree, line = workers.verdict([result(0), result(1, loss=0.6)])
    assert not agree and "rank 1 loss 0.6 != rank 0 0.5" in line
    assert not workers.verdict([result(0, world=3), result(1, world=3)])[0]
    assert not workers.verdict([])[0]


def test_result_line_is_the_last_one():
    lines = ["noise", 'DLLAB_RESULT {"rank": 0}', 'DLLAB_RESULT {"rank": 1}', "bye"]
    assert workers.parse_result(lines) == {"rank": 1}
    assert workers.parse_result(["DLLAB_RESULT {broken"]) is None
    assert workers.parse_result([]) is None


def test_the_first_worker_to_fail_is_blamed_not_its_peers():
    killed = workers.Outcome(1, "w1", 137, finished_at="2026-01-01T00:00:01.1Z")
    peer = workers.Outcome(0, "w0", 1, finished_at="2026-01-01T00:00:01.3Z")
    running = workers.Outcome(2, "w2", None)
    assert workers.first_failure([peer, killed, running]) is killed
    assert workers.first_failure([workers.Outcome(0, "w0", 0)]) is None
    assert workers.describe_exit(137) == "exit code 137 (killed)"


# --- the training script's own pieces ---------------------------------------------------------


def test_shards_of_each_global_batch_partition_it_in_order():
    X, y = train_worker.make_data(64, 0)
    parts = [train_worker.local_shard(X, y, 16, r, 4) for r in range(4)]
    assert all(p[2] == 4 and p[3] == 4 for p in parts)  # 4 steps of 4 rows each
    first_batch = np.concatenate([p[0][:4] for p in parts])
    np.testing.assert_array_equal(first_batch, X[:16])
    with pytest.raises(SystemExit, match="equal shards"):
        train_worker.local_shard(X, y, 16, 0, 3)


def test_digest_is_of_the_float32_bytes_and_loss_is_finite():
    init = train_worker.initial_weights(8, 0)
    assert train_worker.digest(init) == train_worker.digest([w.astype(np.float64) for w in init])
    assert train_worker.digest(init) != train_worker.digest(train_worker.initial_weights(8, 1))
    X, y = train_worker.make_data(128, 0)
    assert 1.0 < train_worker.loss_of(init, X, y) < 3.0


# --- the CLI: one line and exit 2 -------------------------------------------------------------


def cli(*args, path=None, tmp_path=None):
    env = dict(os.environ, PYTHONPATH=str(SRC))
    env.pop("DLLAB_WORKERS_SRC", None)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "dllab.workers", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def fake_bin(tmp_path: Path, **scripts: str) -> str:
    """A PATH holding only fake commands (name -> shell body)."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for name, body in scripts.items():
        f = folder / name.replace("_", "-")
        f.write_text(f"#!/bin/sh\n{body}\n")
        f.chmod(f.stat().st_mode | stat.S_IEXEC)
    return str(folder)  # not /usr/bin: the real docker lives there


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "dllab: --workers must be a whole number from 1 to 64, not '0'"),
        (["--workers", "abc"], "dllab: --workers must be a whole number from 1 to 64, not 'abc'"),
        (["--framework", "mxnet"], "dllab: unknown framework 'mxnet': choose one of torch, tensorflow, keras-jax"),
        (["--variant", "cuda", "--framework", "keras-jax"], "dllab: keras-jax needs jax, which the cuda variant does not ship: use --variant cpu, or --framework torch|tensorflow"),
        (["--variant", "gpu"], "dllab: unknown variant 'gpu': choose one of cpu, cuda, metal"),
        (["--epochs", "0"], "dllab: --epochs must be a whole number from 1 up, not '0'"),
        (["--variant", "metal"], "dllab: variant metal does not run in Docker: use --variant cpu (or cuda on an NVIDIA machine)"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(args, message):
    proc = cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == message
    assert proc.stdout == ""


def test_more_gpu_workers_than_gpus_is_one_line_and_exit_2(tmp_path):
    path = fake_bin(tmp_path, nvidia_smi='echo "0, GPU-1, NVIDIA H100 80GB HBM3, 81559 MiB"')
    proc = cli("--variant", "cuda", "--workers", "2", "--framework", "torch", path=path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "dllab: 2 GPU workers need 2 GPUs, this machine has 1: use --workers 1 or fewer"
    )


def test_no_docker_is_one_line_and_exit_2(tmp_path):
    proc = cli("--workers", "2", path=fake_bin(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"dllab: {containers.NO_DOCKER}"


def test_engine_down_is_one_line_and_exit_2(tmp_path):
    proc = cli("--workers", "2", path=fake_bin(tmp_path, docker="exit 1"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"dllab: {containers.NO_ENGINE}"


def test_missing_image_is_one_line_and_exit_2(tmp_path):
    docker = 'if [ "$1" = info ]; then exit 0; fi\nexit 1'
    proc = cli("--image", "dllab:nope", path=fake_bin(tmp_path, docker=docker))
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == "dllab: image dllab:nope is missing: build it with `invoke build --variant cpu`"
    )


# --- the orchestration, against a fake `docker` ------------------------------------------------

FAKE_DOCKER = r"""#!{python}
import json, os, sys, time
args = sys.argv[1:]
log = os.environ["FAKE_DOCKER_LOG"]
with open(log, "a") as f:
    f.write(json.dumps(args) + "\n")
pids = log + ".pids"
if args[:2] == ["rm", "--force"]:  # like the engine: removing a container ends its `docker run`
    for line in open(pids).read().split() if os.path.exists(pids) else []:
        name, pid = line.split("=")
        if name in args:
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
if args[0] != "run":
    sys.exit(0)
name = args[args.index("--name") + 1]
with open(pids, "a") as f:
    f.write(f"{{name}}={{os.getpid()}}\n")
rank = int(name.rsplit("-w", 1)[1])
mode = os.environ.get("FAKE_MODE", "agree")
if mode == "hang":  # never joins its peers
    time.sleep(30)
print(f"rank {{rank}} of 2: fake engine, first step after 0.1 s", flush=True)
if mode == "long":  # trains for longer than the start-up deadline
    time.sleep(2)
if mode == "fail" and rank == 1:
    print("Traceback: the fake worker broke", flush=True)
    sys.exit(3)
if mode == "fail":
    time.sleep(30)  # a healthy peer, waiting for the broken one: stopped by the orchestrator
digest = "d1" if mode == "differ" and rank == 1 else "d0"
print("epoch 1/1: 0.010 s", flush=True)
result = dict(rank=rank, world=2, engine="fake", device="cpu", epoch_seconds=[0.01],
              startup_seconds=0.1, framework="torch", initial_loss=1.5, loss=0.5,
              digest=digest, norm=1.0, samples_per_second=1000.0)
print("DLLAB_RESULT " + json.dumps(result), flush=True)
"""


@pytest.fixture
def fake_docker(tmp_path, monkeypatch):
    folder = tmp_path / "fakebin"
    folder.mkdir()
    docker = folder / "docker"
    docker.write_text(FAKE_DOCKER.format(python=sys.executable))
    docker.chmod(0o755)
    log = tmp_path / "docker.log"
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))

    def calls() -> list[list[str]]:
        return [json.loads(line) for line in log.read_text().splitlines()]

    return calls


def run_fake(monkeypatch, mode: str) -> tuple[int, str, str, workers.Plan]:
    import io

    monkeypatch.setenv("FAKE_MODE", mode)
    p = plan("torch", 2)
    out, err = io.StringIO(), io.StringIO()
    code = workers.execute(p, runner.Runner(), out, err)
    return code, out.getvalue(), err.getvalue(), p


def test_execute_prints_each_rank_and_the_verdict_then_cleans_up(fake_docker, monkeypatch):
    code, out, err, p = run_fake(monkeypatch, "agree")
    assert code == 0, err
    assert "rank 0: loss 1.500000 -> 0.500000000  weights d0" in out
    assert "rank 1: loss 1.500000 -> 0.500000000  weights d0" in out
    assert out.strip().splitlines()[-1] == "workers agree: 2 workers, weights d0"
    calls = fake_docker()
    assert calls[0][:2] == ["network", "create"] and calls[0][-1] == p.network
    assert ["rm", "--force", f"{p.network}-w0", f"{p.network}-w1"] in calls
    assert ["network", "rm", p.network] in calls


def test_execute_says_what_differs(fake_docker, monkeypatch):
    code, out, err, _ = run_fake(monkeypatch, "differ")
    assert code == 1
    assert out.strip().splitlines()[-1] == "workers differ: rank 1 weights d1 != rank 0 d0"


def test_a_failing_worker_stops_the_run_names_itself_and_shows_its_last_lines(
    fake_docker, monkeypatch
):
    import time

    start = time.monotonic()
    code, out, err, p = run_fake(monkeypatch, "fail")
    assert time.monotonic() - start < 8, "the healthy peer was not stopped"
    assert code == 1
    lines = err.strip().splitlines()
    assert lines[-1] == (
        f"dllab: worker 1 of 2 ({p.network}-w1) failed with exit code 3; "
        "the other workers were stopped"
    )
    assert "  Traceback: the fake worker broke" in lines
    assert ["rm", "--force", f"{p.network}-w0", f"{p.network}-w1"] in fake_docker()


def test_the_startup_deadline_covers_startup_only(fake_docker, monkeypatch):
    """Workers that took their first step train on past DLLAB_TRAIN_STARTUP_TIMEOUT; workers
    that never do fail once it passes, named, and are removed."""
    import time

    monkeypatch.setenv("DLLAB_TRAIN_STARTUP_TIMEOUT", "1")
    code, out, err, _ = run_fake(monkeypatch, "long")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == "workers agree: 2 workers, weights d0"
    began = time.monotonic()
    code, out, err, p = run_fake(monkeypatch, "hang")
    assert code == 1 and time.monotonic() - began < 10
    assert "did not take its first step within 1 s (DLLAB_TRAIN_STARTUP_TIMEOUT)" in err
    assert ["rm", "--force", f"{p.network}-w0", f"{p.network}-w1"] in fake_docker()


def test_extra_train_flags_reach_every_worker():
    import dataclasses

    p = dataclasses.replace(plan("tensorflow", 2), train_extra=("--hidden", "1024"))
    assert workers.worker_command(p, 1)[-2:] == ["--hidden", "1024"]


def test_under_sudo_the_workers_run_as_the_user_who_ran_sudo(monkeypatch):
    """Root with SUDO_UID/SUDO_GID: the workers' containers run as that user, as `invoke lab` does."""
    monkeypatch.setattr(os, "getuid", lambda: 0)
    monkeypatch.setenv("SUDO_UID", "4321")
    monkeypatch.setenv("SUDO_GID", "4322")
    plan = workers.make_plan("cpu", "torch", 2, 1)
    assert plan.owner == containers.Owner(4321, 4322)
