"""The peak model: what a device could do at most, in FLOP/s per dtype, and where that figure comes from."""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Callable
from pathlib import Path
from typing import NotRequired, TypedDict

from dllab import devices
from dllab.runner import Runner

CPUINFO = Path("/proc/cpuinfo")
MAX_FREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")

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

# The matmul dtypes measured on each accelerator; a pair in CPU_FLAGS_NEEDED only where the CPU
# reports one of those flags (without them, bfloat16 on a CPU is emulated and says nothing).
DTYPES = {"cpu": ("float32", "bfloat16"), "cuda": GPU_DTYPES, "mps": ("float32", "float16")}
CPU_FLAGS_NEEDED = {("cpu", "bfloat16"): CPU_BF16_FLAGS}


class Peak(TypedDict):
    """Peak FLOP/s per dtype (None: no figure for that dtype), and where they come from."""

    flops: dict[str, float | None]
    source: str  # "unknown: why" when there is no figure at all
    assumptions: NotRequired[list[str]]


class Device(TypedDict):
    """The device a bench run measured, and its peak."""

    name: str | None  # the CPU's or GPU's model; None where no framework named the GPU
    peak: Peak


def dtypes(accelerator: str, cpu_flags: set[str]) -> list[str]:
    """The matmul dtypes to measure on `accelerator`, given the CPU's /proc/cpuinfo flags."""
    found = []
    for dtype in DTYPES[accelerator]:
        needed = CPU_FLAGS_NEEDED.get((accelerator, dtype))
        if needed is None or needed & cpu_flags:
            found.append(dtype)
    return found


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


def cpu_peak(cpuinfo: str, cpus: int, max_khz: int | None = None) -> Peak:
    """Peak FLOP/s of `cpus` CPUs: cores x SIMD lanes x FMA units x 2 x clock, from /proc/cpuinfo."""
    info = parse_cpuinfo(cpuinfo)
    flags = info["flags"]
    assumptions: list[str] = []
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


def gpu_peak(name: str | None) -> Peak:
    """Vendor peak FLOP/s for a GPU named as the driver reports it; unknown models say so."""
    for pattern, *tflops, source in GPU_PEAKS:
        if name and re.search(pattern, name, re.IGNORECASE):
            flops = {d: t * 1e12 if t else None for d, t in zip(GPU_DTYPES, tflops, strict=True)}
            return {"flops": flops, "source": source, "assumptions": ["dense, boost clock"]}
    return {"flops": {}, "source": f"unknown: {name or 'no GPU name'} is not in dllab's table"}


def cpu_name(cpuinfo: str) -> str:
    """The CPU model as the system names it."""
    if platform.system() == "Darwin":
        return Runner()(["sysctl", "-n", "machdep.cpu.brand_string"]).out.strip()
    info = parse_cpuinfo(cpuinfo)
    return info.get("model name") or info.get("Model") or platform.processor() or platform.machine()


def max_khz() -> int | None:
    """The CPU's top clock: $DLLAB_CPU_MAX_MHZ (a VM hides the boost clock), else cpufreq's."""
    if os.environ.get("DLLAB_CPU_MAX_MHZ"):
        return int(float(os.environ["DLLAB_CPU_MAX_MHZ"]) * 1000)
    try:
        return int(MAX_FREQ.read_text())
    except (OSError, ValueError):
        return None


def device(accelerator: str, cpuinfo: str, gpu_name: str | None) -> Device:
    """The measured device's name and its Peak, from the model that knows `accelerator`."""
    return PEAK_MODELS[accelerator](cpuinfo, gpu_name)


def _cpu(cpuinfo: str, gpu_name: str | None) -> Device:
    return {"name": cpu_name(cpuinfo), "peak": cpu_peak(cpuinfo, devices.cpu_count(), max_khz())}


def _apple_gpu(cpuinfo: str, gpu_name: str | None) -> Device:
    # The GPU is part of the chip the CPU's name names.
    peak: Peak = {"flops": {}, "source": "unknown: Apple publishes no peak dllab can look up"}
    return {"name": cpu_name(cpuinfo), "peak": peak}


def _nvidia_gpu(cpuinfo: str, gpu_name: str | None) -> Device:
    return {"name": gpu_name, "peak": gpu_peak(gpu_name)}


# Where each accelerator's peak comes from: the CPU's own report, NVIDIA's datasheets, none.
PEAK_MODELS: dict[str, Callable[[str, str | None], Device]] = {
    "cpu": _cpu,
    "cuda": _nvidia_gpu,
    "mps": _apple_gpu,
}
