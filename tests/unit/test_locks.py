"""Locks: compiled from pyproject.toml, stamped with their source, stale when it changes."""

from __future__ import annotations

import datetime
import re

import pytest

from dllab import locks, variants
from dllab.errors import UserError


@pytest.mark.parametrize("variant", locks.lock_sets(), ids=lambda v: v.name)
def test_every_lock_matches_its_source(variant):
    """No committed lock is stale: each was compiled from the pyproject.toml on main, and records
    the day it was resolved as of (with its exemptions) in the lines its digest covers."""
    for platform in variant.platforms:
        assert locks.stale(variant, platform) is None
        assert locks.recorded_as_of(variant.lock(platform)) is not None


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


def test_compile_command_targets_bookworm_python_and_the_platform(tmp_path):
    """uv compiles for Python 3.11.2 and the lock's platform, with hashes."""
    cmd = locks.compile_command(
        variants.get("metal"), "macos-arm64", [], datetime.date(2026, 11, 1), tmp_path / "l.txt"
    )
    assert cmd[cmd.index("--python-version") + 1] == "3.11.2"
    assert cmd[cmd.index("--python-platform") + 1] == "aarch64-apple-darwin"
    assert "--generate-hashes" in cmd


def test_as_of_is_the_start_of_that_day_utc_with_the_exemptions(tmp_path, monkeypatch):
    """--exclude-newer the day's first instant, UTC; torch (cpu) exempt; --as-of resolves anew;
    the SBOM tools' lock asks no torch index, even where DLLAB_TORCH_INDEX names one."""
    monkeypatch.setenv("DLLAB_TORCH_INDEX", "https://torch.example/whl/cpu")
    day = datetime.date(2026, 11, 24)
    cpu = locks.compile_command(variants.get("cpu"), "linux-x86_64", [], day, tmp_path / "l", True)
    assert cpu[cpu.index("--exclude-newer") + 1] == "2026-11-24T00:00:00Z"
    assert cpu[cpu.index("--exclude-newer-package") + 1] == "torch=false"
    assert "--upgrade" in cpu and "https://torch.example/whl/cpu" in cpu
    sbom = locks.compile_command(locks.SBOM, "linux-x86_64", [], day, tmp_path / "l")
    assert "--exclude-newer-package" not in sbom and "--upgrade" not in sbom
    assert "--extra-index-url" not in sbom


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2026-12-05", "is in the future (today is 2026-12-04, UTC)"),
        ("2026-13-01", "--as-of must be a date as YYYY-MM-DD, not '2026-13-01'"),
        ("last week", "--as-of must be a date as YYYY-MM-DD"),
    ],
)
def test_a_future_or_malformed_as_of_is_one_line(value, message):
    """Refused before uv runs, in one line that says what a good value is."""
    with pytest.raises(UserError, match=re.escape(message)):
        locks.parse_as_of(value, today=datetime.date(2026, 12, 4))
    assert locks.parse_as_of("2026-12-04", today=datetime.date(2026, 12, 4))


def test_as_of_in_the_future_exits_2_and_leaves_every_lock_as_it_was(capsys):
    """`invoke lock --as-of` a day to come: exit 2, one line, no lock touched."""
    before = {p: p.read_bytes() for p in variants.LOCKS.rglob("*.txt")}
    assert locks.main(["compile", "--as-of", "2999-01-01"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dllab: --as-of 2999-01-01 is in the future") and err.count("\n") == 1
    assert {p: p.read_bytes() for p in variants.LOCKS.rglob("*.txt")} == before


def test_uvs_reason_becomes_one_line_naming_the_pin_and_its_day():
    """uv's hint that a pin was published after the cutoff, as one actionable line."""
    stderr = (
        "error: No solution found when resolving dependencies\n  cause: Because there is no "
        "version of jax==0.10.2 and dllab depends on jax==0.10.2, ...\n\nhint: `jax` was filtered "
        "by `exclude-newer` to only include packages uploaded before 2026-06-01T00:00:00Z. The "
        "requested version, v0.10.2, was published at 2026-06-17T23:42:41.259Z. Consider ..."
    )
    line = locks.unresolved(variants.get("cpu"), "linux-x86_64", datetime.date(2026, 6, 1), stderr)
    assert line == (
        "the cpu lock for linux-x86_64 does not resolve as of 2026-06-01: jax 0.10.2, which "
        "pyproject.toml asks for, was published on 2026-06-17: choose a later --as-of date, or "
        "an older pin"
    )


CPU_LOCK = variants.get("cpu").lock("linux-x86_64")  # the committed one, whatever a test patches


def restamp(tmp_path, monkeypatch, edit):
    """A copy of the cpu x86_64 lock, edited by `edit` and then stamped as `invoke lock` would."""
    text = CPU_LOCK.read_text()
    body = edit(text.split(locks.CONTENT_PREFIX, 1)[0])
    (tmp_path / "cpu-linux-x86_64.txt").write_text(
        body + f"{locks.CONTENT_PREFIX}{locks.content_digest(body)}\n"
    )
    monkeypatch.setattr(variants, "LOCKS", tmp_path)
    return locks.stale(variants.get("cpu"), "linux-x86_64")


def test_a_lock_without_its_as_of_record_or_exemption_is_refused(tmp_path, monkeypatch):
    """No date, a date to come, or an exemption dropped: --check names the lock and the fix."""
    no_date = restamp(tmp_path, monkeypatch, lambda t: re.sub(r"# dllab-as-of: .*\n", "", t))
    assert no_date == "cpu-linux-x86_64.txt records no as-of date: run `invoke lock --variant cpu`"
    future = restamp(tmp_path, monkeypatch, lambda t: t.replace("as-of: 2026-", "as-of: 2999-"))
    assert "a day still to come" in future
    dropped = restamp(tmp_path, monkeypatch, lambda t: re.sub(r"# dllab-as-of-exempt: .*\n", "", t))
    assert "exemptions from its as-of date are not locks.AS_OF_EXEMPT's" in dropped


def test_an_exemption_for_a_pin_that_is_not_exact_is_refused(tmp_path, monkeypatch):
    """An exempt package must be pinned with ==, or its version could float past the date."""
    text = locks.PYPROJECT.read_text().replace('"jax==0.10.2"', '"jax>=0.10"')
    edited = tmp_path / "pyproject.toml"
    edited.write_text(text)
    monkeypatch.setattr(locks.source, "__defaults__", (edited,))
    monkeypatch.setitem(locks.AS_OF_EXEMPT, "cpu", {"torch": "why", "jax": "why"})
    why = locks.as_of_problem(variants.get("cpu"), "linux-x86_64", "")
    assert why and "jax is exempt from the as-of date" in why and "'jax>=0.10'" in why


def find_links() -> list[str]:
    """The wheel folder pip is configured with here (the cpu x86_64 torch build lies there)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.find-links"],
                         capture_output=True, text=True).stdout.split()  # fmt: skip
    return out


@pytest.mark.slow
def test_as_of_picks_what_was_newest_that_day(tmp_path, monkeypatch):
    """Resolved anew as of 2026-11-24, the cpu lock has babel 2.18.0; as of the next day, 2.19.0
    (uploaded on the 24th): the cutoff is the day's start, UTC, whenever it is run."""
    monkeypatch.setenv("DLLAB_TORCH_INDEX", "")
    cpu = variants.get("cpu")
    found = []
    for day in (datetime.date(2026, 11, 24), datetime.date(2026, 11, 25)):
        folder = tmp_path / day.isoformat()
        folder.mkdir()
        lock = locks.resolve(cpu, "linux-x86_64", find_links(), day, folder, fresh=True)
        found.append(locks.pins(lock)["babel"])
        assert locks.recorded_as_of(lock) == day
    assert found == ["2.18.0", "2.19.0"]


@pytest.mark.slow
def test_a_date_before_the_pins_existed_is_one_line_exit_2(monkeypatch, capsys):
    """--as-of 1990-01-01: one line naming a pin and the day it came out; no lock touched."""
    monkeypatch.setenv("DLLAB_TORCH_INDEX", "")
    before = {p: p.read_bytes() for p in variants.LOCKS.rglob("*.txt")}
    assert locks.main(["compile", "--as-of", "1990-01-01", "--variant", "cpu"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (
        "dllab: the cpu lock for linux-x86_64 does not resolve as of 1990-01-01: tensorflow-cpu "
        "2.21.0, which pyproject.toml asks for, was published on 2026-03-06: choose a later "
        "--as-of date, or an older pin"
    )
    assert {p: p.read_bytes() for p in variants.LOCKS.rglob("*.txt")} == before


@pytest.mark.slow
def test_a_lock_that_fails_leaves_every_lock_as_it_was(tmp_path, monkeypatch, capsys):
    """The SBOM tools' locks resolve, then the cpu lock cannot (a pin that does not exist):
    exit 2, uv's reason in one line, and no lock was written, not even the tools'."""
    monkeypatch.setenv("DLLAB_TORCH_INDEX", "")
    edited = tmp_path / "pyproject.toml"
    edited.write_text(locks.PYPROJECT.read_text().replace('"jax==0.10.2"', '"jax==0.0.0.1"'))
    monkeypatch.setattr(locks, "PYPROJECT", edited)
    before = {p: p.read_bytes() for p in variants.LOCKS.rglob("*.txt")}
    assert (
        locks.main(["compile", "--as-of", "2026-12-01", "--variant", "sbom", "--variant", "cpu"])
        == 2
    )
    err = capsys.readouterr().err.splitlines()
    assert "locking sbom for linux-aarch64 as of 2026-12-01" in err
    assert err[-1].startswith(
        "dllab: the cpu lock for linux-x86_64 does not resolve as of 2026-12-01: "
    )
    assert "jax==0.0.0.1" in err[-1]
    assert {p: p.read_bytes() for p in variants.LOCKS.rglob("*.txt")} == before


@pytest.mark.slow
def test_check_resolve_confirms_each_pin_existed_on_the_recorded_day(tmp_path, monkeypatch):
    """`lock --check --resolve`: uv keeps every pin of the cpu and tools locks as of their dates;
    a lock that claims an earlier day than its pins is caught, naming what uv picks instead."""
    monkeypatch.setenv("DLLAB_TORCH_INDEX", "")
    assert locks.main(["check", "--resolve", "--variant", "cpu", "--variant", "sbom",
                       *(f"--find-links={f}" for f in find_links())]) == 0  # fmt: skip
    restamp(tmp_path, monkeypatch, lambda t: t.replace("as-of: 2026-12-04", "as-of: 2026-11-01"))
    folder = tmp_path / "again"
    folder.mkdir()
    why = locks.resolved_again(variants.get("cpu"), "linux-x86_64", find_links(), folder)
    assert why and why.startswith(
        "cpu-linux-x86_64.txt does not resolve to itself as of 2026-11-01"
    )


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
