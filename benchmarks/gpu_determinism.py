"""Determinism on this machine: does a second training run repeat the doctor's losses bit for bit,
and what do torch's determinism switches cost (issue 23, on CUDA)?

    PYTHONPATH=src python benchmarks/gpu_determinism.py ACCELERATOR MODE [DOCTOR_JSON] > determinism.json

With the doctor's report: trains every target the doctor trained once more (each switches its
determinism on, as the doctor's step does) and compares the losses. Then runs `dllab bench` on
torch twice, without and with --deterministic, and reports the samples/s of each.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dllab import bench, smoke
from dllab.frameworks import Target


def main(accelerator: str, mode: str, doctor_json: str = "") -> None:
    doctor = json.loads(Path(doctor_json).read_text()) if doctor_json else {"frameworks": []}
    repeats = {}
    for r in doctor["frameworks"]:
        if "train" not in r:
            continue
        again = smoke.train(Target.parse(r["target"]), accelerator)
        first = r["train"].get("losses")
        repeats[r["target"]] = {
            "identical": again.get("losses") == first,
            "first": first,
            "second": again.get("losses"),
            "error": again.get("error"),
        }
    torch = [Target("torch")]
    cost = {}
    for deterministic in (False, True):
        run = bench.run(accelerator, mode, torch, deterministic=deterministic)["results"][0]
        cost["deterministic" if deterministic else "default"] = {
            key: run[key]["median"] if key in run else run.get("error") for key in ("mlp", "cnn")
        }
    print(json.dumps({"repeat_losses": repeats, "torch_samples_per_s": cost}, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:])
