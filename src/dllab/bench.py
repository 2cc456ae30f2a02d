"""`python -m dllab bench`: matmul FLOP/s against the device's peak, training throughput, start-up cost."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import socket
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from dllab import devices, variants
from dllab.errors import UserError
from dllab.frameworks import TARGETS, Target

CPUINFO = Path("/proc/cpuinfo")
MAX_FREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")

# Per mode: matmul n (CPU, GPU), training batch, warm-up calls, repeats, seconds each repeat lasts.
MODES = {
    "full": {"n": (2048, 8192), "batch": 128, "warmup": 5, "repeats": 7, "repeat_s": 1.0},
    "quick": {"n": (512, 2048), "batch": 128, "warmup": 3, "repeats": 3, "repeat_s": 0.2},
    # For tests: the whole machinery in seconds; its numbers mean little.
    "tiny": {"n": (128, 128), "batch": 16, "warmup": 1, "repeats": 2, "repeat_s": 0.01},
}
# The same two models in every framework: 28x28 single-channel input, as flat vectors.
MODEL = {"image": 28, "hidden": 256, "channels": (16, 32), "classes": 2, "lr": 0.01}
CHILD_TIMEOUT = 600  # seconds per framework in a full run; a stuck one is recorded and skipped

# Dense (no 2:4 sparsity) peak TFLOP/s from NVIDIA's datasheets, where figures "with sparsity"
# are halved; GeForce figures from the Ada whitepaper, with FP32 accumulation as frameworks use.
# The first pattern that matches the reported name wins, so the specific ones come first.
GPU_PEAKS = (
    (r"H100.*NVL", 60, 417.5, 835.5, 835.5, "NVIDIA H100 NVL datasheet"),
    (r"H100.*PCIe", 51, 378, 756.5, 756.5, "NVIDIA H100 Tensor Core GPU datasheet (PCIe)"),
    (r"H100", 67, 494.5, 989.5, 989.5, "NVIDIA H100 Tensor Core GPU datasheet (SXM)"),
    (r"H200.*NVL", 60, 417.5, 835.5, 835.5, "NVIDIA H200 NVL datasheet"),
    (r"H200", 67, 494.5, 989.5, 989.5, "NVIDIA H200 Tensor Core GPU datasheet (SXM)"),
    (r"A100", 19.5, 156, 312, 312, "NVIDIA A100 Tensor Core GPU datasheet"),
    (r"L40S", 91.6, 183, 362.05, 362.05, "NVIDIA L40S datasheet"),
    (r"\bL4\b", 30.3, 60, 121, 121, "NVIDIA L4 Tensor Core GPU datasheet"),
    (r"\bA10\b", 31.2, 62.5, 125, 125, "NVIDIA A10 Tensor Core GPU datasheet"),
    (r"RTX 4090", 82.6, 82.6, 165.2, 165.2, "NVIDIA Ada Lovelace GPU architecture whitepaper"),
    (r"\bT4\b", 8.1, None, None, 65, "NVIDIA T4 Tensor Core GPU datasheet"),
    (r"V100.*PCIE", 14, None, None, 112, "NVIDIA V100 Tensor Core GPU datasheet (PCIe)"),
    (r"V100", 15.7, None, None, 125, "NVIDIA V100 Tensor Core GPU datasheet (SXM2)"),
)
GPU_DTYPES = ("float32", "tfloat32", "bfloat16", "float16")
CPU_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 AVX-512/AMX, Arm's FEAT_BF16


def parse_cpuinfo(text: str) -> dict:
    """The first processor's fields from /proc/cpuinfo text, plus the highest "cpu MHz" of all."""
    fields: dict = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep:
            continue
        if key == "cpu MHz":
            fields["mhz"] = max(fields.get("mhz", 0.0), float(value))
        fields.setdefault(key, value)
    fields["flags"] = set((fields.get("flags") or fields.get("Features") or "").split())
    return fields


def cpu_peak(cpuinfo: str, cpus: int, max_khz: int | None = None) -> dict:
    """Peak FLOP/s of `cpus` CPUs: cores x SIMD lanes x FMA units x 2 x clock, from /proc/cpuinfo."""
    info = parse_cpuinfo(cpuinfo)
    flags = info["flags"]
    assumptions = []
    if "avx512f" in flags:
        lanes, units, isa = 16, 2, "avx512f"
        if info.get("vendor_id") == "AuthenticAMD" and info.get("cpu family") == "25":
            units = 1  # Zen 4 splits each 512-bit FMA over its two 256-bit pipes
            assumptions.append("AMD Zen 4 (family 25): one 512-bit FMA per cycle per core")
        else:
            assumptions.append("2 AVX-512 FMA units per core, as on server cores")
    elif "avx2" in flags or "avx" in flags:
        lanes, isa = 8, "avx2" if "avx2" in flags else "avx"
        units = 2 if "fma" in flags else 1  # without FMA: one multiply and one add port
        assumptions.append(
            "2 256-bit FMA units per core" if units == 2 else "1 multiply + 1 add port per core"
        )
    elif "asimd" in flags:
        lanes, units, isa = 4, 2, "asimd"
        assumptions.append("2 NEON FMA pipes per core; SVE, if any, counted as 128-bit NEON")
    elif "sse2" in flags:
        lanes, units, isa = 4, 1, "sse2"
    else:
        return {"flops": {}, "source": "unknown: no SIMD flags in /proc/cpuinfo", "assumptions": []}
    if max_khz:
        ghz, clock = max_khz / 1e6, "DLLAB_CPU_MAX_MHZ or cpufreq cpuinfo_max_freq"
    elif info.get("mhz"):
        ghz, clock = info["mhz"] / 1e3, '/proc/cpuinfo "cpu MHz"'
        assumptions.append('"cpu MHz" is the current (or, in a VM, nominal) clock, not the boost')
    else:
        return {
            "flops": {},
            "source": "unknown: no clock in /proc/cpuinfo or cpufreq",
            "assumptions": [],
        }
    cores = cpus
    threads = int(info.get("siblings") or 1) // int(info.get("cpu cores") or 1)
    if threads > 1:  # SMT siblings share their core's FMA units
        cores = max(1, cpus // threads)
        assumptions.append(f"{cpus} usable CPUs are {cores} cores with {threads}-way SMT")
    float32 = cores * lanes * units * 2 * ghz * 1e9
    peak = {"float32": float32, "bfloat16": None}
    if "avx512_bf16" in flags and "amx_bf16" not in flags:
        peak["bfloat16"] = 2 * float32  # VDPBF16PS: two bfloat16 products per float32 lane
        assumptions.append("bfloat16 peak = 2 x float32 (AVX512_BF16 dot products)")
    return {
        "flops": peak,
        "source": f"{cores} cores x {lanes} float32 lanes ({isa}) x {units} FMA unit(s) x 2 FLOP "
        f"x {ghz:.3f} GHz ({clock})",
        "assumptions": assumptions,
    }


def gpu_peak(name: str | None) -> dict:
    """Vendor peak FLOP/s for a GPU named as the driver reports it; unknown models say so."""
    for pattern, *tflops, source in GPU_PEAKS:
        if name and re.search(pattern, name, re.IGNORECASE):
            flops = {d: t * 1e12 if t else None for d, t in zip(GPU_DTYPES, tflops, strict=True)}
            return {"flops": flops, "source": source, "assumptions": ["dense, boost clock"]}
    return {"flops": {}, "source": f"unknown: {name or 'no GPU name'} is not in dllab's table"}


def cpu_name(cpuinfo: str) -> str:
    """The CPU model as the system names it."""
    if platform.system() == "Darwin":
        return subprocess.run(
            ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True
        ).stdout.strip()
    info = parse_cpuinfo(cpuinfo)
    return info.get("model name") or info.get("Model") or platform.processor() or platform.machine()


def usable_cpus() -> int:
    """The CPUs this process may run on (a container's --cpuset-cpus included)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def max_khz() -> int | None:
    """The CPU's top clock: $DLLAB_CPU_MAX_MHZ (a VM hides the boost clock), else cpufreq's."""
    if os.environ.get("DLLAB_CPU_MAX_MHZ"):
        return int(float(os.environ["DLLAB_CPU_MAX_MHZ"]) * 1000)
    try:
        return int(MAX_FREQ.read_text())
    except (OSError, ValueError):
        return None


def settings(mode: str, accelerator: str, cpu_flags: set[str]) -> dict:
    """What a run measures, passed to each child as JSON."""
    spec = dict(MODES[mode])
    n_cpu, n_gpu = spec.pop("n")
    if accelerator == "cuda":
        dtypes = list(GPU_DTYPES)
    elif accelerator == "mps":
        dtypes = ["float32", "float16"]
    else:
        dtypes = ["float32", *(["bfloat16"] if cpu_flags & CPU_BF16_FLAGS else [])]
    side = ((MODEL["image"] - 2) // 2 - 2) // 2  # two 3x3 valid convolutions, each 2x2-pooled
    return {
        "mode": mode,
        "n": n_cpu if accelerator == "cpu" else n_gpu,
        "dtypes": dtypes,
        **spec,
        **MODEL,
        "cnn_flat": MODEL["channels"][-1] * side * side,
        "note": "float32 matmul is strict IEEE float32 (TF32 off); training uses each "
        "framework's default float32 math",
    }


def measure(
    step: Callable[[], object], sync: Callable[[object], object], work: float, s: dict
) -> dict:
    """Time `step()`: its first call, then after warm-up the median rate of `work` per second."""
    start = time.perf_counter()
    sync(step())
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(s["warmup"]):
        out = step()
    sync(out)
    # Enough calls per repeat to fill repeat_s, so that a fast step is not lost in timer noise.
    calls = max(1, round(s["repeat_s"] * s["warmup"] / (time.perf_counter() - start)))
    rates = []
    for _ in range(s["repeats"]):
        start = time.perf_counter()
        for _ in range(calls):
            out = step()
        sync(out)  # devices run asynchronously: wait for the last call before stopping the clock
        rates.append(work * calls / (time.perf_counter() - start))
    median = statistics.median(rates)
    return {
        "median": median,
        "min": min(rates),
        "max": max(rates),
        "first_s": first,
        "steady_s": work / median,
        "calls_per_repeat": calls,
    }


def per_dtype(s: dict, run: Callable[[str], dict]) -> dict:
    """`run(dtype)` for each matmul dtype; one that fails is recorded with its error, the rest go on."""
    found = {}
    for dtype in s["dtypes"]:
        try:
            found[dtype] = {"n": s["n"], **run(dtype)}
        except Exception as exc:  # e.g. bfloat16 on an older GPU: the other dtypes still count
            found[dtype] = {"error": traceback.format_exception_only(exc)[-1].strip()}
    return found


def run(accelerator: str, mode: str, targets=TARGETS, log=sys.stderr) -> dict:
    """Measure each target in a fresh process, one after another so that none slows another."""
    date = datetime.now(UTC).isoformat(timespec="seconds")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None  # a busy machine measures low
    cpuinfo = CPUINFO.read_text() if CPUINFO.exists() else ""
    spec = settings(mode, accelerator, parse_cpuinfo(cpuinfo)["flags"])
    results = [measure_target(target, accelerator, spec, log) for target in targets]
    device = describe_device(accelerator, cpuinfo, results)
    for result in results:
        for dtype, entry in result.get("matmul", {}).items():
            peak = device["peak"]["flops"].get(dtype)
            if "median" in entry:
                entry["peak_fraction"] = entry["median"] / peak if peak else None
    facts = devices.system()
    facts["promised_accelerator"] = facts.pop("accelerator")
    return {
        "schema": 1,
        "date": date,
        "host": socket.gethostname(),
        **facts,
        "lock_digest": os.environ.get("DLLAB_LOCK_DIGEST"),
        "load_average_before": load,
        "accelerator": accelerator,
        "device": device,
        "settings": spec,
        "results": results,
    }


def measure_target(target: Target, accelerator: str, spec: dict, log) -> dict:
    """One target's results from a fresh child process, or why there are none."""
    if not target.installed():
        print(f"dllab bench: {target.name}: not installed", file=log)
        return {
            "target": target.name,
            "installed": False,
            "error": f"not installed: no {' or '.join(target.needs)}",
        }
    print(f"dllab bench: measuring {target.name} on {accelerator} ({spec['mode']}) ...", file=log)
    start = time.perf_counter()
    timeout = CHILD_TIMEOUT if spec["mode"] == "full" else devices.PROBE_TIMEOUT
    result = devices.run_child(target, "bench", accelerator, json.dumps(spec), timeout=timeout)
    result.update(installed=True, wall_s=time.perf_counter() - start)
    if not result.get("error") and result.get("device_kind") != accelerator:
        result["error"] = f"measured on {result.get('device')}, not on {accelerator}"
    outcome = f"error: {result['error']}" if result.get("error") else "done"
    print(f"dllab bench: {target.name}: {outcome} ({result['wall_s']:.1f} s)", file=log)
    return result


def describe_device(accelerator: str, cpuinfo: str, results: list[dict]) -> dict:
    """The measured device's name and peak FLOP/s per dtype, with where the peak comes from."""
    if accelerator == "cpu":
        return {"name": cpu_name(cpuinfo), "peak": cpu_peak(cpuinfo, usable_cpus(), max_khz())}
    if accelerator == "mps":  # the GPU is part of the chip the CPU's name names
        peak = {"flops": {}, "source": "unknown: Apple publishes no peak dllab can look up"}
        return {"name": cpu_name(cpuinfo), "peak": peak}
    name = next((r["device_name"] for r in results if r.get("device_name")), None)
    return {"name": name, "peak": gpu_peak(name)}


def save(report: dict, out: Path) -> Path:
    """Write OUT/bench-<host>-<accelerator>-<timestamp>.json and .png, and OUT/latest.json."""
    out.mkdir(parents=True, exist_ok=True)
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", report["host"])
    stamp = report["date"].replace("-", "").replace(":", "").removesuffix("+0000") + "Z"
    stem = f"bench-{host}-{report['accelerator']}-{stamp}"
    try:
        chart(report, out / f"{stem}.png")
        report["chart"] = f"{stem}.png"
    except ImportError:  # matplotlib comes with the lab extra; the numbers do not need it
        report["chart"] = None
    text = json.dumps(report, indent=2) + "\n"
    (out / f"{stem}.json").write_text(text)
    (out / "latest.json").write_text(text)
    return out / f"{stem}.json"


def chart(report: dict, path: Path) -> None:
    """Bars of MLP and CNN samples/s per framework, and matmul % of peak (GFLOP/s if unknown)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: also inside containers and CI
    import matplotlib.pyplot as plt

    rows = [r for r in report["results"] if r.get("installed") and not r.get("error")]
    names = [r["target"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    for ax, key in zip(axes, ("mlp", "cnn"), strict=False):
        median = [r[key]["median"] for r in rows]
        spread = [
            [m - r[key]["min"] for m, r in zip(median, rows, strict=True)],
            [r[key]["max"] - m for m, r in zip(median, rows, strict=True)],
        ]
        ax.bar(names, median, yerr=spread, capsize=3, color="tab:blue")
        ax.set_title(f"{key.upper()} training, samples/s (median, min-max)")
    ax = axes[2]
    dtypes = report["settings"]["dtypes"]
    known = bool(report["device"]["peak"]["flops"].get("float32"))
    width = 0.8 / len(dtypes)
    for i, dtype in enumerate(dtypes):
        entries = [r["matmul"].get(dtype, {}) for r in rows]
        values = [
            100 * (e.get("peak_fraction") or 0) if known else e.get("median", 0) / 1e9
            for e in entries
        ]
        ax.bar([x + i * width for x in range(len(rows))], values, width, label=dtype)
    ax.set_xticks([x + width * (len(dtypes) - 1) / 2 for x in range(len(rows))], names)
    ax.set_title(f"matmul n={report['settings']['n']}, " + ("% of peak" if known else "GFLOP/s"))
    ax.legend()
    for ax in axes:
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle(
        f"{report['device']['name']} ({report['accelerator']}), {report['platform']}, "
        f"{'container' if report['in_container'] else 'native'}, {report['date']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def markdown(results: dict) -> str:
    """The run as Markdown for BENCHMARKS.md: the device and its peak, then one row per target."""
    dtypes = results["settings"]["dtypes"]
    device, peak = results["device"], results["device"]["peak"]
    where = "container" if results.get("in_container") else "native"
    load = results.get("load_average_before")
    peaks = ", ".join(
        f"{d} {_num(f / 1e9)} GFLOP/s" for d, f in peak["flops"].items() if f and d in dtypes
    )
    lines = [
        f"**{device['name'] or 'unknown device'}** ({results['accelerator']}; {results['platform']}, {where}, "
        f"variant {results.get('variant') or 'unset'}), {results['date']}, "
        f"`{results.get('command', 'dllab bench')}`"
        + (f", load average before: {load[0]:.1f}" if load else ""),
        "",
        f"Peak: {peaks or 'unknown'} ({peak['source']}"
        + "".join(f"; {a}" for a in peak.get("assumptions", []))
        + ").",
        "",
    ]
    header = ["Framework", "Version"]
    for dtype in dtypes:
        header += [f"matmul {dtype} GFLOP/s", "% peak"]
    header += ["MLP samples/s", "CNN samples/s", "import s", "first step s (MLP / CNN)"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    notes = []
    for r in results["results"]:
        version = r.get("version", "—")
        if r.get("backend_version"):
            version += f" ({r['backend']} {r['backend_version']})"
        if not r.get("installed"):
            row = [r["target"], "not installed"] + ["—"] * (len(header) - 2)
        elif r.get("error"):
            row = [r["target"], version] + ["—"] * (len(header) - 2)
            notes.append(f"- {r['target']}: {r['error']}")
        else:
            row = [r["target"], version]
            for dtype in dtypes:
                entry = r["matmul"].get(dtype, {})
                if "error" in entry:
                    notes.append(f"- {r['target']} matmul {dtype}: {entry['error']}")
                fraction = entry.get("peak_fraction")
                row += [
                    _num(entry["median"] / 1e9) if "median" in entry else "—",
                    f"{100 * fraction:.0f}%" if fraction else "—",
                ]
            row += [
                f"{_num(r[k]['median'])} ({_num(r[k]['min'])}–{_num(r[k]['max'])})"
                for k in ("mlp", "cnn")
            ]
            row += [
                f"{r['import_s']:.2f}",
                f"{r['mlp']['first_s']:.2f} / {r['cnn']['first_s']:.2f}",
            ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines + ([""] + notes if notes else []))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dllab bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and few repeats: about a minute on 2 cores",
    )
    parser.add_argument(
        "--expect",
        choices=variants.ACCELERATORS,
        help="accelerator to measure (default: the promised one, $DLLAB_ACCELERATOR, else cpu)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path(".bench"), help="folder for JSON and PNG (default: .bench)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=[t.name for t in TARGETS],
        help="measure only this target (repeatable; default: all six)",
    )
    parser.add_argument(
        "--print-json", action="store_true", help="print the JSON results instead of the table"
    )
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests only
    return parser


def main(argv: list[str]) -> int:
    """Run the benchmark, save JSON and chart, print the Markdown table; 1 if a framework failed."""
    args = build_parser().parse_args(argv)
    try:
        accelerator = variants.check_accelerator(
            args.expect or variants.expected_accelerator() or "cpu"
        )
    except UserError as exc:
        print(f"dllab bench: {exc}", file=sys.stderr)
        return 2
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    targets = [t for t in TARGETS if not args.only or t.name in args.only]
    report = run(accelerator, mode, targets)
    report["command"] = shlex.join(["dllab", "bench", *argv])
    path = save(report, args.out)
    print(f"dllab bench: wrote {path} and {report['chart']}", file=sys.stderr)
    print(json.dumps(report, indent=2) if args.print_json else markdown(report))
    return 1 if any(r.get("installed") and r.get("error") for r in report["results"]) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
