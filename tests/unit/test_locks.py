"""Locks: compiled from pyproject.toml, stamped with their source, stale when it changes."""

from __future__ import annotations

import pytest

from dllab import locks, variants
from dllab.errors import UserError


@pytest.mark.parametrize("variant", variants.VARIANTS.values(), ids=lambda v: v.name)
def test_every_lock_matches_its_source(variant):
    """No committed lock is stale: each was compiled from the pyproject.toml on main."""
    for platform in variant.platforms:
        assert locks.stale(variant, platform) is None


def test_a_changed_source_makes_the_lock_stale_and_says_how_to_fix_it(tmp_path, monkeypatch):
    """Editing the cpu extra changes the digest; the message names `invoke lock --variant cpu`."""
    text = locks.PYPROJECT.read_text().replace('"jax==0.10.2"', '"jax==0.10.1"')
    edited = tmp_path / "pyproject.toml"
    edited.write_text(text)
    cpu = variants.get("cpu")
    assert locks.digest(cpu, "linux-x86_64", edited) != locks.digest(cpu, "linux-x86_64")
    monkeypatch.setattr(locks, "PYPROJECT", edited)
    monkeypatch.setattr(locks.digest, "__defaults__", (edited,))
    assert "run `invoke lock --variant cpu`" in locks.stale(cpu, "linux-x86_64")


def test_source_expands_the_shared_lab_extra():
    """A variant's source is its own pins plus the lab extra's, not the dllab[lab] reference."""
    lines = locks.source(variants.get("cuda"))
    assert "tensorflow[and-cuda]==2.21.0" in lines and "keras==3.15.1" in lines
    assert not any(line.startswith("dllab[") for line in lines)


def test_locks_pin_what_each_variant_promises():
    """cpu pins torch's CPU build, cuda TF with CUDA + torch 2.14.1, metal TF 2.18 + tensorflow-metal."""
    cpu = locks.pins(variants.get("cpu").lock("linux-x86_64"))
    assert cpu["torch"] == "2.13.0+cpu" and cpu["tensorflow-cpu"] == "2.21.0"
    assert not any(name.startswith("nvidia-") for name in cpu)
    cuda = locks.pins(variants.get("cuda").lock("linux-x86_64"))
    assert cuda["tensorflow"] == "2.21.0" and cuda["torch"] == "2.14.1"
    # One cuDNN and one NCCL, torch's exact pins: the -cu12 twins would overwrite the same files.
    assert cuda["nvidia-cudnn-cu13"] == "9.24.0.43" and "nvidia-cudnn-cu12" not in cuda
    assert "nvidia-nccl-cu13" in cuda and "nvidia-nccl-cu12" not in cuda
    assert cuda["nvidia-cublas-cu12"].startswith("12.")  # TF's own CUDA 12 libraries stay
    metal = locks.pins(variants.get("metal").lock("macos-arm64"))
    assert metal["tensorflow"].startswith("2.18.") and metal["tensorflow-metal"] == "1.2.0"


def test_compile_command_targets_bookworm_python_and_the_platform():
    """uv compiles for Python 3.11.2 and the lock's platform, with hashes."""
    cmd = locks.compile_command(variants.get("metal"), "macos-arm64", [])
    assert cmd[cmd.index("--python-version") + 1] == "3.11.2"
    assert cmd[cmd.index("--python-platform") + 1] == "aarch64-apple-darwin"
    assert "--generate-hashes" in cmd


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variant", "platform"), [("metal", "macos-arm64"), ("cpu", "linux-aarch64")]
)
def test_every_pin_of_a_lock_for_another_machine_has_its_wheel_on_the_index(
    tmp_path, variant, platform
):
    """pip finds a wheel with the locked hash for each pin, for that platform and Python 3.11.

    The x86_64 locks get the same proof in CI, where `invoke wheelhouse` downloads them whole.
    """
    import json
    import subprocess

    chosen = variants.get(variant)
    report = tmp_path / "report.json"
    proc = subprocess.run(
        locks.check_wheels_command(chosen, platform, report),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = {
        locks.canonical(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert found == locks.pins(chosen.lock(platform))


def test_environment_yml_is_the_metal_lock_as_conda_sees_it():
    """environment.yml is exactly what `invoke lock --variant metal` writes from the metal lock."""
    metal = variants.get("metal")
    assert locks.ENVIRONMENT_YML.read_text() == locks.environment_yml(metal, "macos-arm64")
    text = locks.ENVIRONMENT_YML.read_text()
    assert "tensorflow-metal==1.2.0" in text and "PYTORCH_ENABLE_MPS_FALLBACK" in text
    assert "- nodefaults" in text


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text.replace("    --hash=sha256:", "    --hash=sha256:0", 1),  # a hash edited
        lambda text: text.replace("torch==2.13.0+cpu", "torch==2.13", 1),  # a pin cut short
        lambda text: text[: len(text) // 3],  # the file cut off mid-way
    ],
    ids=["hash", "pin", "truncated"],
)
def test_a_lock_cut_short_or_edited_by_hand_is_refused(tmp_path, monkeypatch, damage):
    """`invoke lock --check` (and so `invoke build`) fails on a damaged lock, naming the fix."""
    cpu = variants.get("cpu")
    (tmp_path / "cpu-linux-x86_64.txt").write_text(damage(cpu.lock("linux-x86_64").read_text()))
    monkeypatch.setattr(variants, "LOCKS", tmp_path)
    assert "cut short or edited by hand" in locks.stale(cpu, "linux-x86_64")
    assert locks.main(["check", "--variant", "cpu"]) == 1


def test_broken_toml_is_one_line(tmp_path, monkeypatch):
    """A pyproject.toml that is not TOML: a UserError naming the file, no traceback."""
    broken = tmp_path / "pyproject.toml"
    broken.write_text("[project\nname = ")
    with pytest.raises(UserError, match="pyproject.toml is not valid TOML"):
        locks.source(variants.get("cpu"), broken)
