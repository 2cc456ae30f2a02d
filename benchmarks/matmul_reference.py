"""The reference a GPU bench is held against: the best loop of plain, warmed-up torch.matmul calls.

    python benchmarks/matmul_reference.py [--device cuda] [--n 8192] [--sustained 10] > reference.json

Per dtype (float32 strict, TF32, bfloat16, float16): random n x n inputs, 10 untimed calls,
then 10 loops of 20 calls each, timed with CUDA events; the best loop's FLOP/s is the figure.
No dllab code runs here, so that dllab's own bench can be checked against it.

With --sustained S (CUDA only), bfloat16 loops then run for S seconds and each loop's rate is
kept with its time: run beside `nvidia-smi ... -lms 100`, that shows whether a long full load
runs slower than a short one, and why (clock, power, temperature).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

DTYPES = ("float32", "tfloat32", "bfloat16", "float16")


def loop_rate(a, b, calls: int) -> float:
    """FLOP/s of one loop of `calls` products a @ b: CUDA events on a GPU, the host clock on a CPU."""
    n = a.shape[0]
    if a.is_cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            a @ b
        end.record()
        end.synchronize()
        seconds = start.elapsed_time(end) / 1e3
    else:  # a rehearsal on a CPU
        began = time.perf_counter()
        for _ in range(calls):
            a @ b
        seconds = time.perf_counter() - began
    return 2 * n**3 * calls / seconds


def inputs(n: int, dtype: str, device: str):
    """Two random n x n matrices of `dtype` (tfloat32: float32 with TF32 on), warmed up."""
    torch.backends.cuda.matmul.allow_tf32 = dtype == "tfloat32"
    kind = torch.float32 if dtype == "tfloat32" else getattr(torch, dtype)
    a, b = (torch.randn(n, n, device=device, dtype=kind) for _ in range(2))
    loop_rate(a, b, 10)  # warm-up: cuBLAS's handle and kernel choice, the clock up
    return a, b


def best_rate(n: int, dtype: str, device: str, loops: int = 10, calls: int = 20) -> float:
    """FLOP/s of the fastest of `loops` loops of `calls` n^3 matmuls."""
    a, b = inputs(n, dtype, device)
    return max(loop_rate(a, b, calls) for _ in range(loops))


def sustained(n: int, seconds: float, calls: int = 20) -> list[tuple[float, float]]:
    """(seconds since the start, FLOP/s) of each loop of `calls` bfloat16 matmuls, for `seconds`."""
    a, b = inputs(n, "bfloat16", "cuda")
    began = time.perf_counter()
    loops = []
    while time.perf_counter() - began < seconds:
        rate = loop_rate(a, b, calls)
        loops.append((round(time.perf_counter() - began, 3), rate))
    return loops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--n", type=int, default=8192)
    parser.add_argument("--sustained", type=float, default=0, help="seconds of bfloat16 load")
    args = parser.parse_args()
    rates = {dtype: best_rate(args.n, dtype, args.device) for dtype in DTYPES}
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    found = {"n": args.n, "device": name, "torch": torch.__version__, "flops": rates}
    if args.sustained:
        found["sustained_bfloat16"] = sustained(args.n, args.sustained)
    print(json.dumps(found))


if __name__ == "__main__":
    main()
