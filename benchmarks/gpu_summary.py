"""The lines a GPU run ends with: what the doctor, the bench, the reference and the checks found.

    PYTHONPATH=src python benchmarks/gpu_summary.py OUT

Reads OUT/doctor.json, reference.json, bench.json, gpus.json and determinism.json (whichever
exist) and prints the bench's table, then bf16 as a % of the datasheet peak and of the reference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dllab import doctor, report


def load(out: Path, name: str) -> dict | None:
    path = out / name
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"({name}: {exc})")
        return None


def main(out: Path) -> None:
    found = load(out, "doctor.json")
    if found:
        print(doctor.render(found))
        for r in found["frameworks"]:
            if "train" in r:
                t = r["train"]
                print(
                    f"  {r['target']}: trained on {t.get('device')}, losses {t.get('losses', [0])[0]:.4f} -> {t.get('losses', [0])[-1]:.4f}"
                )
    reference = load(out, "reference.json")
    results = load(out, "bench.json")
    if results:
        print()
        print(report.markdown(results))
        print()
        peak = results["device"]["peak"]["flops"]
        ref = (reference or {}).get("flops", {})
        print(
            "| Framework | dtype | TFLOP/s | % datasheet peak | % reference (plain torch.matmul loop) |"
        )
        print("|---|---|---|---|---|")
        print(
            *(
                f"| reference | {d} | {f / 1e12:.1f} | {100 * f / peak[d]:.0f}% | 100% |"
                for d, f in ref.items()
                if peak.get(d)
            ),
            sep="\n",
        )
        for r in results["results"]:
            for dtype, entry in r.get("matmul", {}).items():
                if "max" not in entry:
                    continue
                rate = entry["max"]
                of_peak = f"{100 * rate / peak[dtype]:.0f}%" if peak.get(dtype) else "-"
                of_ref = f"{100 * rate / ref[dtype]:.0f}%" if ref.get(dtype) else "-"
                print(
                    f"| {r['target']} | {dtype} | {rate / 1e12:.1f} | {of_peak} | {of_ref} | "
                    f"sustained (median) {entry['median'] / 1e12:.1f} |"
                )
        loops = (reference or {}).get("sustained_bfloat16")
        if loops:
            rates = [rate / 1e12 for _, rate in loops]
            tenth = max(1, len(rates) // 10)
            print(
                f"sustained bfloat16 torch.matmul: first loops {sum(rates[:tenth]) / tenth:.0f}, "
                f"last {sum(rates[-tenth:]) / tenth:.0f} TFLOP/s ({len(rates)} loops, {loops[-1][0]:.0f} s)"
            )
    smi = out / "smi.csv"
    if smi.exists():  # timestamp, clocks.sm [MHz], power.draw [W], temperature, reasons
        rows = [[f.strip() for f in line.split(",")] for line in smi.read_text().splitlines()]
        rows = [r for r in rows if len(r) == 5 and r[1].endswith("MHz")]
        busy = [r for r in rows if float(r[2].split()[0]) > 300]  # under load
        if busy:
            clocks = sorted(int(r[1].split()[0]) for r in busy)
            print(
                f"under load ({len(busy)} samples of {len(rows)}): SM clock {clocks[0]}-{clocks[-1]} "
                f"MHz (median {clocks[len(clocks) // 2]}), power up to "
                f"{max(float(r[2].split()[0]) for r in busy):.0f} W, temperature up to "
                f"{max(int(r[3]) for r in busy)} C, reasons {sorted({r[4] for r in busy})}"
            )
    assigned = load(out, "gpus.json")
    if assigned:
        print()
        print(
            f"nvidia-smi: {assigned['nvidia_smi'].strip()!r}; driver {assigned['driver']}; {assigned['cpus']} CPUs"
        )
        for key in ("learners (cap 2 per GPU)", "workers"):
            print(f"{key}: {json.dumps(assigned[key])}")
    repeated = load(out, "determinism.json")
    if repeated:
        print()
        for name, r in repeated["repeat_losses"].items():
            print(
                f"second training run of {name}: {'bit-identical losses' if r['identical'] else 'DIFFERENT'} {r['error'] or ''}"
            )
        print(
            f"torch samples/s, default vs deterministic: {json.dumps(repeated['torch_samples_per_s'])}"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
