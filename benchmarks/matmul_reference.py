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


def best_rate(n: int, dtype: str, device: str, loops: int = 10, calls: int = 20) -> float:
    """FLOP/s of the fastest of `loops` loops of `calls` n^3 matmuls."""
    torch.backends.cuda.matmul.allow_tf32 = dtype == "tfloat32"
    kind = torch.float32 if dtype == "tfloat32" else getattr(torch, dtype)
    a, b = (torch.randn(n, n, device=device, dtype=kind) for _ in range(2))
    for _ in range(10):
        a @ b
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    best = 0.0
    for _ in range(loops):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(calls):
                a @ b
            end.record()
            end.synchronize()
            seconds = start.elapsed_time(end) / 1e3
        else:  # a rehearsal on a CPU: the host clock
            began = time.perf_counter()
            for _ in range(calls):
                a @ b
            seconds = time.perf_counter() - began
        best = max(best, 2 * n**3 * calls / seconds)
    return best


def sustained(n: int, seconds: float, calls: int = 20) -> list[tuple[float, float]]:
    """(seconds since the start, FLOP/s) of each loop of `calls` bfloat16 matmuls, for `seconds`."""
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    began = time.perf_counter()
    loops = []
    while time.perf_counter() - began < seconds:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            a @ b
        end.record()
        end.synchronize()
        rate = 2 * n**3 * calls / (start.elapsed_time(end) / 1e3)
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
