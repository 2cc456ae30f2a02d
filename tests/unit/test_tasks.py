"""tasks.py: the commands each task runs (invoke's MockContext), and its one-line errors."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from invoke import Exit, MockContext, Result

import tasks
from dllab import variants


def ctx(**results):
    """A MockContext where `docker info` answers and any other command succeeds."""
    return MockContext(run={re.compile(".*"): Result(stdout="24.0.0")}, repeat=True, **results)


def commands(c):
    return [call.args[0] for call in c.run.call_args_list]


def test_build_cuda_runs_one_docker_build_with_the_variant_target_lock_and_labels():
    """invoke build --variant cuda: target cuda, VARIANT/PLATFORM/LOCK_DIGEST args, both tags."""
    c = ctx()
    tasks.build(c, variant="cuda")
    [build] = [cmd for cmd in commands(c) if cmd.startswith("docker build")]
    assert "--target cuda" in build and "--build-arg VARIANT=cuda" in build
    assert (
        "--build-arg PLATFORM=linux-x86_64" in build and "--build-arg LOCK_DIGEST=sha256:" in build
    )
    assert "--tag dllab:cuda" in build and "--network none" not in build


def test_offline_build_without_a_wheelhouse_says_which_task_fills_it():
    """--offline with no wheels image names `invoke wheelhouse --variant cpu`."""
    c = MockContext(
        run={
            re.compile("docker image inspect dllab-wheels.*"): Result(exited=1),
            re.compile(".*"): Result(stdout="ok"),
        },
        repeat=True,
    )
    with pytest.raises(Exit, match="run `invoke wheelhouse --variant cpu` first"):
        tasks.build(c, variant="cpu", offline=True)


def test_offline_build_copies_wheels_from_their_image_with_no_network():
    """--offline passes the wheels image as WHEELHOUSE and builds with --network none."""
    c = ctx()
    tasks.build(c, variant="cpu", offline=True)
    [build] = [cmd for cmd in commands(c) if cmd.startswith("docker build")]
    assert (
        "--build-arg WHEELHOUSE=dllab-wheels:cpu-linux-x86_64" in build
        and "--network none" in build
    )


@pytest.mark.parametrize("task", [tasks.build, tasks.lab, tasks.test, tasks.clean])
def test_unknown_variant_exits_2_listing_valid_ones(task):
    """--variant gpu stops every task before any command, naming cpu, cuda, metal."""
    c = ctx()
    with pytest.raises(Exit, match="unknown variant 'gpu': choose one of cpu, cuda, metal") as info:
        task(c, variant="gpu")
    assert info.value.code == 2 and commands(c) == []


def test_metal_on_linux_exits_2_before_running_anything(monkeypatch):
    """invoke build --variant metal on Linux: one line, no command run."""
    monkeypatch.setattr(variants, "host_platform", lambda: "linux-x86_64")
    c = ctx()
    with pytest.raises(Exit, match="metal is native macOS arm64 only"):
        tasks.build(c, variant="metal")
    assert commands(c) == []


def test_no_engine_says_how_to_start_one():
    """When `docker info` fails, build says to start Docker, and builds nothing."""
    c = MockContext(run={re.compile("docker info.*"): Result(exited=1)}, repeat=True)
    with pytest.raises(Exit, match="no Docker engine answers: start Docker"):
        tasks.build(c, variant="cpu")


def test_cuda_lab_without_nvidia_runtime_says_install_the_toolkit():
    """invoke lab --variant cuda on an engine without the nvidia runtime: the fix, not a crash."""
    c = MockContext(
        run={
            re.compile(r"docker info --format '\{\{json .Runtimes\}\}'"): Result(
                stdout='{"runc":{}}'
            ),
            re.compile(".*"): Result(stdout="ok"),
        },
        repeat=True,
    )
    with pytest.raises(Exit, match="NVIDIA Container Toolkit"):
        tasks.lab(c, variant="cuda")


def test_lab_publishes_on_loopback_with_a_token_and_the_work_dir(monkeypatch, tmp_path):
    """The lab container is published on 127.0.0.1 only, with a token and /work mounted."""
    monkeypatch.setattr(tasks.time, "sleep", lambda s: None)
    c = MockContext(
        run={
            re.compile("docker container inspect.*"): Result(exited=1),
            re.compile(".*"): Result(stdout="ok"),
        },
        repeat=True,
    )
    tasks.lab(c, variant="cpu", port=18888, work=str(tmp_path / "work"))
    [run] = [cmd for cmd in commands(c) if cmd.startswith("docker run")]
    assert "--publish 127.0.0.1:18888:8888" in run
    assert re.search(r"--env JUPYTER_TOKEN=[0-9a-f]{48}", run)
    assert f"--volume {tmp_path / 'work'}:/work" in run and "--gpus" not in run


def test_clean_never_touches_the_work_directory():
    """invoke clean removes containers and images only: no rm of files."""
    c = ctx()
    tasks.clean(c)
    assert commands(c) and not any(
        re.search(r"\brm -r|\brm -f|\brmdir", cmd) for cmd in commands(c)
    )


def test_dry_run_of_build_cuda_shows_the_exact_command(tmp_path):
    """`invoke --dry build --variant cuda` prints the docker build line and runs nothing."""
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "--dry", "build", "--variant", "cuda"],
        capture_output=True,
        text=True,
        cwd=tasks.ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "docker build --file" in proc.stdout and "--target cuda" in proc.stdout


def test_cli_unknown_variant_is_one_line_without_traceback():
    """`invoke build --variant gpu` prints one line on stderr and exits 2."""
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "build", "--variant", "gpu"],
        capture_output=True,
        text=True,
        cwd=tasks.ROOT,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "dllab: unknown variant 'gpu': choose one of cpu, cuda, metal"


def test_metal_on_a_mac_without_conda_builds_a_venv_from_the_metal_lock(monkeypatch):
    """On macOS arm64 with no conda, build makes .venv-metal from the hashed metal lock."""
    monkeypatch.setattr(variants, "host_platform", lambda: "macos-arm64")
    monkeypatch.setattr(tasks.shutil, "which", lambda tool: None)
    c = ctx()
    tasks.build(c, variant="metal")
    assert commands(c)[1].endswith(
        "--require-hashes --no-deps -r " + str(variants.get("metal").lock("macos-arm64"))
    )
    assert commands(c)[0].endswith("-m venv .venv-metal")


def test_metal_on_a_mac_with_mamba_uses_environment_yml_and_tests_expect_mps(monkeypatch):
    """With mamba, build updates the dllab-metal env from environment.yml; test runs inside it."""
    monkeypatch.setattr(variants, "host_platform", lambda: "macos-arm64")
    monkeypatch.setattr(
        tasks.shutil, "which", lambda tool: "/opt/bin/mamba" if tool == "mamba" else None
    )
    c = ctx()
    tasks.build(c, variant="metal")
    tasks.test(c, variant="metal")
    assert "mamba env update --name dllab-metal --file environment.yml" in commands(c)[0]
    assert commands(c)[-1].startswith(
        "mamba run --no-capture-output --name dllab-metal python -m pytest tests/env"
    )
