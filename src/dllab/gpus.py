"""Which GPU each learner's server or each worker gets: pure decisions over nvidia-smi's list.

Standard library only, and no other dllab module: the hub's own venv imports it from the
checkout's src/ (jupyterhub_config.py), beside workers.py and hub.py. Only devices.py asks
nvidia-smi (`devices.gpu_table()`, with the QUERY below); this module decides from its text.
A GPU is named by nvidia-smi's index ("0", "1", ...), as `docker run --gpus device=ID` and a
DeviceRequest take it; its UUID is kept for the report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# The fields parse() reads, in this order: nvidia-smi --query-gpu=QUERY --format=csv,noheader
QUERY = "index,uuid,name,memory.total"


class NoGpu(Exception):
    """No GPU can be handed out: the message says why and what to do."""


@dataclass(frozen=True)
class Gpu:
    """One GPU as nvidia-smi lists it."""

    index: str  # the id every assignment uses
    uuid: str
    name: str
    memory_mib: int


def parse(csv_text: str) -> list[Gpu]:
    """The GPUs in `nvidia-smi --query-gpu=QUERY --format=csv,noheader` output; other lines are skipped."""
    found = []
    for line in csv_text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 4 or not fields[0].isdigit():
            continue  # a warning line, a blank line, "No devices were found"
        index, uuid, name, memory = fields
        mib = memory.removesuffix("MiB").strip()
        found.append(Gpu(index, uuid, name, int(mib) if mib.isdigit() else 0))
    return found


def ids(gpus: Sequence[Gpu]) -> list[str]:
    """The ids to hand out, in nvidia-smi's order."""
    return [g.index for g in gpus]


def load(
    servers: Iterable[tuple[str | None, str | None]], gpus: Sequence[str], user: str
) -> dict[str, int]:
    """Running servers per GPU, from each server's (GPU, owner); `user`'s own is not counted (it is being replaced)."""
    counts = dict.fromkeys(gpus, 0)
    for gpu, owner in servers:
        if gpu in counts and owner != user:
            counts[gpu] += 1
    return counts


def pick(gpus: Sequence[str], load: Mapping[str, int], cap: int = 0) -> str:
    """The GPU for one more learner: the least loaded (ties: first listed); NoGpu if none, or all at `cap`."""
    if not gpus:
        raise NoGpu("no GPU to hand out: check nvidia-smi on the host, or set DLLAB_HUB_GPUS")
    gpu = min(gpus, key=lambda g: (load.get(g, 0), gpus.index(g)))
    if cap and load.get(gpu, 0) >= cap:
        raise NoGpu(f"every GPU already serves {cap} learners: try again later")
    return gpu


def for_workers(n: int, gpus: Sequence[str]) -> list[str]:
    """One GPU per worker, worker `rank` gets the rank-th; NoGpu if there are fewer GPUs than workers."""
    if n > len(gpus):
        raise NoGpu(
            f"{n} GPU workers need {n} GPUs, this machine has {len(gpus)}: "
            f"use --workers {len(gpus)} or fewer"
        )
    return list(gpus[:n])
