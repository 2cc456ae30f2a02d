"""Which GPU each learner and each worker would get here, from the real nvidia-smi list (issue 26).

    PYTHONPATH=src python benchmarks/gpu_assign.py > gpus.json

Asks nvidia-smi through devices.py, as the hub and the workers do, then replays dllab.gpus'
decisions: five learners arriving one after another with at most two per GPU, a learner who
restarts their server, and 1 or 2 data-parallel workers.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from dllab import devices, gpus

LEARNERS = ("ada", "grace", "alan", "edsger", "barbara")
CAP = 2  # DLLAB_HUB_GPU_USERS: at most this many learners per GPU


def main() -> None:
    table = devices.gpu_table()
    found = gpus.parse(table)
    ids = gpus.ids(found)
    servers: list[tuple[str | None, str | None]] = []  # (GPU, owner) of each running server
    learners = {}
    for user in (
        *LEARNERS,
        LEARNERS[0],
    ):  # the first learner comes back: same GPU, not counted twice
        try:
            gpu = gpus.pick(ids, gpus.load(servers, ids, user), CAP)
            servers = [s for s in servers if s[1] != user] + [(gpu, user)]
            learners[user] = gpu
        except gpus.NoGpu as exc:
            learners[user] = f"refused: {exc}"
    workers = {}
    for n in (1, 2):
        try:
            workers[str(n)] = gpus.for_workers(n, ids)
        except gpus.NoGpu as exc:
            workers[str(n)] = f"refused: {exc}"
    report = {
        "nvidia_smi": table,
        "driver": devices.nvidia_driver(),
        "cpus": devices.cpu_count(),
        "gpus": [asdict(g) for g in found],
        "learners (cap 2 per GPU)": learners,
        "workers": workers,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
