"""Tasks build and run for the machine they run on: the aarch64 lock on arm64 hosts and Macs."""

from __future__ import annotations

import re
import shlex

import pytest
from invoke import Exit, MockContext, Result

import tasks
from dllab import containers, locks, variants
from dllab import lab as dllab_lab


@pytest.fixture(autouse=True)
def private_state(monkeypatch, tmp_path):
    """Tasks remember labs and built images in DLLAB_STATE: a temporary one per test."""
    monkeypatch.setenv("DLLAB_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("DLLAB_BASE", raising=False)
    monkeypatch.delenv("DLLAB_BUILD_CPU_SHARES", raising=False)
    monkeypatch.setattr(dllab_lab.time, "sleep", lambda s: None)


def host(monkeypatch, name: str) -> None:
    monkeypatch.setattr(variants, "host_platform", lambda: name)


ENGINE = {
    re.compile("docker info .*"): Result(stdout='{"ServerVersion": "24.0.0"}'),
    # What a build recorded in its image (the venv's tree hash), read for its label step.
    re.compile(r"docker run .*venv-tree\.sha256"): Result(stdout="sha256:" + "0" * 64),
}


def ctx():
    """A MockContext where `docker info` answers and any other command succeeds."""
    return MockContext(run={**ENGINE, re.compile(".*"): Result(stdout="24.0.0")}, repeat=True)


def docker(c, verb: str) -> list[list[str]]:
    """The `docker <verb>` commands a task ran, as argument lists (not the label step's build:
    tests/unit/test_provenance.py reads that one)."""
    cmds = [shlex.split(call.args[0]) for call in c.run.call_args_list]
    return [
        cmd
        for cmd in cmds
        if cmd[:2] == ["docker", verb] and str(containers.LABEL_DOCKERFILE) not in cmd
    ]


def option(cmd: list[str], name: str) -> list[str]:
    return [cmd[i + 1] for i, arg in enumerate(cmd) if arg == name]


ARM_HOSTS = ["linux-aarch64", "macos-arm64"]


@pytest.mark.parametrize("machine", ARM_HOSTS)
def test_build_on_an_arm64_host_uses_the_aarch64_lock_and_keeps_the_plain_tag(monkeypatch, machine):
    """On arm64 Linux and on a Mac (Docker Desktop runs linux/arm64), build makes dllab:cpu for arm64."""
    host(monkeypatch, machine)
    c = ctx()
    tasks.build(c, variant="cpu")
    [build] = docker(c, "build")
    args = option(build, "--build-arg")
    assert "PLATFORM=linux-aarch64" in args
    assert f"LOCK_DIGEST={locks.digest(variants.get('cpu'), 'linux-aarch64')}" in args
    assert option(build, "--platform") == ["linux/arm64"]
    assert option(build, "--tag")[0] == "dllab:cpu"


def test_build_for_another_platform_is_tagged_with_it_and_never_replaces_dllab_cpu(monkeypatch):
    """On x86_64, --platform linux-aarch64 builds dllab:cpu-linux-aarch64 (+ its revision tag)."""
    host(monkeypatch, "linux-x86_64")
    c = ctx()
    tasks.build(c, variant="cpu", platform="linux-aarch64")
    [build] = docker(c, "build")
    assert option(build, "--platform") == ["linux/arm64"]
    tags = option(build, "--tag")
    assert tags[0] == "dllab:cpu-linux-aarch64" and "dllab:cpu" not in tags
    assert all(t.startswith("dllab:cpu-linux-aarch64") for t in tags)


def test_the_x86_host_still_builds_dllab_cpu_for_amd64(monkeypatch):
    """The default on x86_64 is unchanged: the x86_64 lock, linux/amd64, dllab:cpu."""
    host(monkeypatch, "linux-x86_64")
    c = ctx()
    tasks.build(c, variant="cpu")
    [build] = docker(c, "build")
    assert "PLATFORM=linux-x86_64" in option(build, "--build-arg")
    assert option(build, "--platform") == ["linux/amd64"]
    assert option(build, "--tag")[0] == "dllab:cpu"


def test_offline_arm64_build_copies_from_the_aarch64_wheels_on_the_base_named_by_dllab_base(
    monkeypatch,
):
    """CI's emulated build: the aarch64 wheels image, no network, and DLLAB_BASE as BASE."""
    host(monkeypatch, "linux-x86_64")
    monkeypatch.setenv("DLLAB_BASE", "debian:bookworm-slim-arm64")
    c = ctx()
    tasks.build(c, variant="cpu", platform="linux-aarch64", offline=True)
    [build] = docker(c, "build")
    args = option(build, "--build-arg")
    assert "WHEELHOUSE=dllab-wheels:cpu-linux-aarch64" in args
    assert "BASE=debian:bookworm-slim-arm64" in args
    assert option(build, "--network") == ["none"]
    assert option(build, "--cpu-shares") == []


def test_ci_can_give_the_emulated_build_a_low_cpu_weight(monkeypatch):
    """DLLAB_BUILD_CPU_SHARES becomes `docker build --cpu-shares` (CI's background arm64 build)."""
    host(monkeypatch, "linux-x86_64")
    monkeypatch.setenv("DLLAB_BUILD_CPU_SHARES", "2")
    c = ctx()
    tasks.build(c, variant="cpu", platform="linux-aarch64", offline=True)
    [build] = docker(c, "build")
    assert option(build, "--cpu-shares") == ["2"]


@pytest.mark.parametrize("machine", ARM_HOSTS)
def test_cuda_on_an_arm64_host_is_refused_in_one_line_naming_cpu(monkeypatch, machine):
    """cuda has no aarch64 lock: one line, exit 2, what to use instead, and nothing run."""
    host(monkeypatch, machine)
    for task in (tasks.build, tasks.lab, tasks.wheelhouse):
        c = ctx()
        with pytest.raises(Exit) as info:
            task(c, variant="cuda")
        message = str(info.value.message)
        assert info.value.code == 2 and "\n" not in message
        assert message == (
            "dllab: cuda has no lock for linux-aarch64 (this machine's Docker): "
            "use --variant cpu here, or build cuda on a linux-x86_64 machine"
        )
        assert docker(c, "build") == [] and docker(c, "run") == []


def test_an_unknown_platform_lists_the_variants_locks(monkeypatch):
    """--platform names a lock platform the variant has, or one line lists them."""
    host(monkeypatch, "linux-x86_64")
    with pytest.raises(Exit, match="cpu has no lock for linux-riscv64: choose one of "
                       "linux-x86_64, linux-aarch64") as info:  # fmt: skip
        tasks.build(ctx(), variant="cpu", platform="linux-riscv64")
    assert info.value.code == 2


@pytest.mark.parametrize("machine", ARM_HOSTS)
def test_lab_test_and_doctor_on_an_arm64_host_run_dllab_cpu_natively(
    monkeypatch, tmp_path, machine
):
    """On an arm64 host the image is dllab:cpu, run with no --platform (it is the engine's own)."""
    host(monkeypatch, machine)
    c = ctx()
    tasks.lab(c, variant="cpu", work=str(tmp_path / "work"))
    tasks.test(c, variant="cpu")
    tasks.doctor(c, variant="cpu", expect="cpu")
    runs = docker(c, "run")
    assert len(runs) == 3
    for run in runs:
        assert "dllab:cpu" in run and "--platform" not in run


def test_lab_test_and_doctor_with_platform_run_the_tagged_image_for_that_platform(
    monkeypatch, tmp_path
):
    """--platform linux-aarch64 on x86_64: dllab:cpu-linux-aarch64, run as linux/arm64."""
    host(monkeypatch, "linux-x86_64")
    c = ctx()
    tasks.lab(c, variant="cpu", work=str(tmp_path / "work"), platform="linux-aarch64")
    tasks.test(c, variant="cpu", platform="linux-aarch64")
    tasks.doctor(c, variant="cpu", expect="cpu", train=True, platform="linux-aarch64")
    runs = docker(c, "run")
    assert len(runs) == 3
    for run in runs:
        assert "dllab:cpu-linux-aarch64" in run and "dllab:cpu" not in run
        assert option(run, "--platform") == ["linux/arm64"]
    inspected = [call.args[0] for call in c.run.call_args_list if "image inspect" in call.args[0]]
    assert all("dllab:cpu-linux-aarch64" in cmd for cmd in inspected)


def test_a_missing_platform_image_says_how_to_build_it(monkeypatch):
    """No dllab:cpu-linux-aarch64: the line names the build command with --platform."""
    host(monkeypatch, "linux-x86_64")
    c = MockContext(
        run={
            **ENGINE,
            re.compile("docker image inspect.*"): Result(exited=1),
            re.compile(".*"): Result(stdout="ok"),
        },
        repeat=True,
    )
    with pytest.raises(
        Exit,
        match=re.escape(
            "image dllab:cpu-linux-aarch64 is missing: build it with "
            "`invoke build --variant cpu --platform linux-aarch64`"
        ),
    ):
        tasks.doctor(c, variant="cpu", platform="linux-aarch64")


def test_platform_without_variant_is_refused_in_one_line():
    """--platform names an image, so test and doctor need --variant with it."""
    for task in (tasks.test, tasks.doctor):
        with pytest.raises(Exit, match="use it with --variant") as info:
            task(ctx(), platform="linux-aarch64")
        assert info.value.code == 2


@pytest.mark.parametrize("machine", ARM_HOSTS)
def test_wheelhouse_on_an_arm64_host_downloads_aarch64_wheels_into_an_arm64_image(
    monkeypatch, machine
):
    """The default wheelhouse is the host's: aarch64 wheel tags, and an image marked linux/arm64."""
    host(monkeypatch, machine)
    c = ctx()
    tasks.wheelhouse(c, variant="cpu")
    download = next(
        shlex.split(call.args[0]) for call in c.run.call_args_list if "pip download" in call.args[0]
    )
    assert "manylinux_2_28_aarch64" in option(download, "--platform")
    assert str(variants.get("cpu").lock("linux-aarch64")) in option(download, "-r")
    [image] = docker(c, "build")
    assert option(image, "--platform") == ["linux/arm64"]
    assert "dllab-wheels:cpu-linux-aarch64" in option(image, "--tag")


@pytest.mark.parametrize(
    ("machine", "engine"),
    [
        ("linux-x86_64", "linux-x86_64"),
        ("linux-aarch64", "linux-aarch64"),
        ("macos-arm64", "linux-aarch64"),
        ("macos-x86_64", "linux-x86_64"),
        ("windows-amd64", "linux-x86_64"),
    ],
)
def test_the_engine_platform_of_each_host(machine, engine):
    """Docker Desktop runs a Linux VM of the host's architecture."""
    assert variants.engine_platform(machine) == engine
    assert containers.image_tag(variants.get("cpu"), engine, host=machine) == "dllab:cpu"


def test_the_torch_each_platform_gets_is_what_its_lock_pins():
    """doctor's per-platform torch line matches the locks, so it cannot drift from them."""
    for name, (builds, why) in variants.TORCH_BY_PLATFORM.items():
        variant = variants.get(name)
        assert set(builds) == set(variant.platforms)
        for platform, version in builds.items():
            assert locks.pins(variant.lock(platform))["torch"] == version, platform
        assert "locks/README.md" in why


def test_doctor_says_which_torch_each_platform_of_the_variant_gets():
    """In the cpu variant, doctor's report names torch per platform and where the reason is."""
    from dllab import doctor

    report = {
        "system": {"platform": "linux-aarch64", "python": "3.11.2", "variant": "cpu",
                   "in_container": True, "nvidia_driver": None},
        "expect": "cpu", "frameworks": [], "problems": [],
    }  # fmt: skip
    line = next(ln for ln in doctor.render(report).splitlines() if ln.startswith("torch in"))
    assert line.startswith("torch in the cpu variant: linux-x86_64 2.13.0+cpu, linux-aarch64 2.9.1")
