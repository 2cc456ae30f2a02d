"""Which GPU each learner or worker gets, from nvidia-smi's real output (an H200's, 2026-12-04)."""

from __future__ import annotations

import pytest

from dllab import devices, gpus
from dllab.runner import Done

# `nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader` on a lent H200.
H200 = "0, GPU-cd0a0dcb-67cd-6a62-2f17-b4c08e42fcf3, NVIDIA H200, 143771 MiB\n"
FOUR = "".join(
    f"{i}, GPU-0000000{i}-0000-0000-0000-000000000000, NVIDIA A100-SXM4-80GB, 81920 MiB\n"
    for i in range(4)
)


def test_parse_reads_the_h200s_line():
    """The real line gives its index, UUID, name and memory."""
    assert gpus.parse(H200) == [
        gpus.Gpu("0", "GPU-cd0a0dcb-67cd-6a62-2f17-b4c08e42fcf3", "NVIDIA H200", 143771)
    ]


@pytest.mark.parametrize(
    "text",
    ["", "No devices were found\n", "NVIDIA-SMI has failed because it couldn't communicate\n"],
)
def test_parse_of_no_gpu_is_an_empty_list(text):
    """nvidia-smi's messages for "no GPU" are not GPUs."""
    assert gpus.parse(text) == []


def test_learners_go_to_the_least_loaded_gpu_first_listed_on_ties():
    """Each new learner gets the GPU with the fewest servers; ties go to the lowest index."""
    ids = gpus.ids(gpus.parse(FOUR))
    servers: list[tuple[str | None, str | None]] = []
    for user in ("a", "b", "c", "d", "e"):
        servers.append((gpus.pick(ids, gpus.load(servers, ids, user)), user))
    assert [gpu for gpu, _ in servers] == ["0", "1", "2", "3", "0"]


def test_a_full_class_is_refused_with_a_reason():
    """With every GPU at the cap, the next learner is refused, and told why."""
    ids = gpus.ids(gpus.parse(H200))
    servers = [("0", "ada"), ("0", "grace")]
    with pytest.raises(gpus.NoGpu, match="every GPU already serves 2 learners"):
        gpus.pick(ids, gpus.load(servers, ids, "alan"), cap=2)


def test_a_learner_restarting_keeps_their_place():
    """A learner's own running server does not count against them: they get their GPU back."""
    ids = gpus.ids(gpus.parse(H200))
    servers = [("0", "ada"), ("0", "grace")]
    assert gpus.load(servers, ids, "ada") == {"0": 1}
    assert gpus.pick(ids, gpus.load(servers, ids, "ada"), cap=2) == "0"


def test_servers_on_unknown_gpus_or_without_one_are_not_counted():
    """A label naming a GPU no longer listed, or none, adds no load."""
    assert gpus.load([("7", "x"), (None, "y")], ["0", "1"], "z") == {"0": 0, "1": 0}


def test_no_gpu_to_pick_says_how_to_find_one():
    """An empty list is refused with where to look."""
    with pytest.raises(gpus.NoGpu, match="nvidia-smi"):
        gpus.pick([], {})


def test_workers_get_one_gpu_each_by_rank():
    """Worker `rank` gets the rank-th GPU; more workers than GPUs is refused with the number to use."""
    ids = gpus.ids(gpus.parse(FOUR))
    assert gpus.for_workers(2, ids) == ["0", "1"]
    with pytest.raises(gpus.NoGpu, match="use --workers 1 or fewer"):
        gpus.for_workers(2, gpus.ids(gpus.parse(H200)))


def fake_smi(stdout: str, returncode: int = 0):
    """A Runner stand-in for nvidia-smi that records its argument lists."""
    calls: list[list[str]] = []

    def run(cmd, **kwargs):
        calls.append(cmd)
        return Done(returncode, stdout)

    run.calls = calls  # type: ignore[attr-defined]
    return run


def test_devices_asks_nvidia_smi_for_the_fields_parse_reads():
    """devices.gpu_list() runs nvidia-smi with gpus.QUERY and returns the parsed GPUs."""
    run = fake_smi(H200)
    assert [g.name for g in devices.gpu_list(run)] == ["NVIDIA H200"]
    assert run.calls == [
        ["nvidia-smi", "--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader"]
    ]


def test_no_nvidia_smi_or_a_failing_one_means_no_gpu():
    """A missing nvidia-smi, or one that fails (no driver), lists no GPU and raises nothing."""

    def missing(cmd, **kwargs):
        return Done(127, err=f"{cmd[0]}: command not found")  # what the Runner answers

    assert devices.gpu_list(missing) == []
    assert devices.gpu_list(fake_smi("", returncode=9)) == []


def test_driver_version_comes_from_nvidia_smi_where_proc_does_not_show_it(monkeypatch, tmp_path):
    """Without /proc/driver/nvidia/version (some sandboxes), nvidia-smi names the driver."""
    monkeypatch.setattr(devices, "NVIDIA_DRIVER", tmp_path / "missing")
    assert devices.nvidia_driver(fake_smi("580.159.04\n")) == "580.159.04"
    assert devices.nvidia_driver(fake_smi("", returncode=9)) is None


def test_driver_version_is_read_from_proc_first(monkeypatch, tmp_path):
    """The kernel module's own report wins: nvidia-smi is not asked."""
    proc = tmp_path / "version"
    proc.write_text(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build\n"
    )
    monkeypatch.setattr(devices, "NVIDIA_DRIVER", proc)
    run = fake_smi("999.0\n")
    assert devices.nvidia_driver(run) == "580.159.04"
    assert run.calls == []
