"""The variant registry: one row per variant, and everything named after it."""

from __future__ import annotations

import pytest

from dllab import lab as dllab_lab
from dllab import locks, variants
from dllab.errors import UserError


def test_every_variant_promises_a_known_accelerator_and_has_a_lock_per_platform():
    """Each row names a known accelerator and runtime, and each of its platforms has a lock file."""
    for variant in variants.VARIANTS.values():
        assert variant.accelerator in variants.ACCELERATORS
        assert set(variant.runtimes) <= set(variants.RUNTIMES)
        for platform, lock in variant.locks.items():
            assert platform in variants.PLATFORMS
            assert lock.name == f"{variant.name}-{platform}.txt"
            assert lock.exists(), lock


def test_unknown_variant_lists_the_valid_ones():
    """`gpu` is not a variant: the error names cpu, cuda and metal."""
    with pytest.raises(UserError, match="unknown variant 'gpu': choose one of cpu, cuda, metal"):
        variants.get("gpu")


def test_metal_on_linux_says_it_is_macos_only_and_what_to_use():
    """Asking for metal on Linux names the host and suggests cpu or cuda."""
    with pytest.raises(
        UserError, match=r"metal is native macOS arm64 only \(this is linux-x86_64\).*--variant cpu"
    ):
        variants.check_runtime(variants.get("metal"), host="linux-x86_64")


def test_metal_is_native_on_a_mac_and_never_docker():
    """On macOS arm64 metal runs natively; Docker on a Mac cannot reach the GPU."""
    metal = variants.get("metal")
    assert variants.check_runtime(metal, host="macos-arm64") == "native"
    with pytest.raises(UserError, match="runs native only, not docker"):
        variants.check_runtime(metal, "docker", host="macos-arm64")


def test_docker_variants_default_to_docker_anywhere():
    """cpu and cuda default to Docker, which runs on any host."""
    for name in ("cpu", "cuda"):
        assert variants.check_runtime(variants.get(name), host="macos-arm64") == "docker"


def test_unknown_accelerator_is_refused():
    """--expect gpu is not an accelerator: the error lists cpu, cuda, mps."""
    with pytest.raises(UserError, match="choose one of cpu, cuda, mps"):
        variants.check_accelerator("gpu")


@pytest.mark.parametrize(
    ("system", "machine", "expected"),
    [
        ("Linux", "x86_64", "linux-x86_64"),
        ("Linux", "aarch64", "linux-aarch64"),
        ("Darwin", "arm64", "macos-arm64"),
        ("Windows", "AMD64", "windows-x86_64"),
    ],
)
def test_host_platform_names_match_lock_names(monkeypatch, system, machine, expected):
    """platform.system()/machine() map to the names the locks use."""
    monkeypatch.setattr(variants._platform, "system", lambda: system)
    monkeypatch.setattr(variants._platform, "machine", lambda: machine)
    assert variants.host_platform() == expected


def test_torch_index_can_be_overridden_even_to_nothing(monkeypatch):
    """DLLAB_TORCH_INDEX replaces the registry's index; empty means PyPI alone."""
    cpu = variants.get("cpu")
    monkeypatch.delenv("DLLAB_TORCH_INDEX", raising=False)
    assert variants.torch_index(cpu) == cpu.torch_index
    monkeypatch.setenv("DLLAB_TORCH_INDEX", "")
    assert variants.torch_index(cpu) == ""


def test_a_fourth_variant_is_one_row_tasks_build_its_commands_from(monkeypatch, tmp_path):
    """A fake `rocm` row (plus its lock) is enough for build, lab, test and doctor to build its
    commands: its stage, lock, devices and tag, with no other file changed."""
    import re

    from invoke import MockContext, Result

    import tasks

    rocm = variants.Variant(
        name="rocm", accelerator="cuda", runtimes=("docker",), platforms=("linux-x86_64",),
        frameworks=("tensorflow", "torch"), summary="AMD GPUs through ROCm",
        gpu_args=("--device", "/dev/kfd", "--device", "/dev/dri"),
    )  # fmt: skip
    monkeypatch.setitem(variants.VARIANTS, "rocm", rocm)
    monkeypatch.setattr(variants, "LOCKS", tmp_path)
    monkeypatch.setattr(locks, "stale", lambda variant, platform: None)
    monkeypatch.setattr(locks, "digest", lambda variant, platform: "sha256:rocm")
    monkeypatch.setattr(locks, "file_digest", lambda variant, platform: "sha256:rocm-lock")
    monkeypatch.setenv("DLLAB_STATE", str(tmp_path / "state"))
    monkeypatch.setattr(dllab_lab.time, "sleep", lambda s: None)
    c = MockContext(
        run={re.compile("docker info .*"): Result(stdout='{"ServerVersion": "24.0.0"}'),
             re.compile(r"docker run .*venv-tree\.sha256"): Result(stdout="sha256:" + "0" * 64),
             re.compile("docker container inspect.*"): Result(exited=1),
             re.compile(".*"): Result(stdout="ok")},
        repeat=True,
    )  # fmt: skip
    tasks.build(c, variant="rocm")
    tasks.lab(c, variant="rocm", work=str(tmp_path / "work"))
    tasks.test(c, variant="rocm")
    tasks.doctor(c, variant="rocm")
    runs = [call.args[0] for call in c.run.call_args_list]
    [build] = [
        cmd for cmd in runs if cmd.startswith("docker build") and "label.Dockerfile" not in cmd
    ]
    assert "--target rocm" in build and "--build-arg PLATFORM=linux-x86_64" in build
    assert "--tag dllab:rocm" in build
    started = [cmd for cmd in runs if cmd.startswith("docker run") and "/bin/cat" not in cmd]
    assert len(started) == 3
    assert all(
        "--device /dev/kfd --device /dev/dri" in cmd and "dllab:rocm" in cmd for cmd in started
    )
