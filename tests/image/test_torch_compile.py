"""torch.compile as PyTorch's tutorials call it, with its default backend (Inductor), in the image."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow

# Lab 02's function: 30 element-wise operations, which Inductor fuses into one C++ loop.
COMPILE = """
import glob, json, statistics, time, torch
def f(x):
    for _ in range(10):
        x = torch.sin(x) * 0.9 + 0.1
    return x.sum()
x = torch.randn(1_000_000, generator=torch.Generator().manual_seed(0))
f_compiled = torch.compile(f)
began = time.monotonic(); compiled = f_compiled(x).item(); first_s = time.monotonic() - began
eager_s, compiled_s = [], []
for _ in range(7):  # interleaved, so a busy moment slows both alike
    t = time.perf_counter(); f(x).item(); eager_s.append(time.perf_counter() - t)
    t = time.perf_counter(); f_compiled(x).item(); compiled_s.append(time.perf_counter() - t)
print(json.dumps({
    "eager": f(x).item(), "compiled": compiled, "first_s": first_s,
    "eager_ms": 1e3 * statistics.median(eager_s), "compiled_ms": 1e3 * statistics.median(compiled_s),
    "kernels": glob.glob("/tmp/inductor/**/*.so", recursive=True),
}))
"""


def test_torch_compile_with_its_default_backend_builds_cpp_and_runs_faster(containers, cpu_image):
    """torch.compile(f) builds C++ kernels with the image's g++, gives eager's result, and runs
    faster than eager on a million floats."""
    code, out = containers.output(
        cpu_image,
        ["python", "-c", COMPILE],
        environment={"TORCHINDUCTOR_CACHE_DIR": "/tmp/inductor"},
    )
    assert code == 0, out[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["kernels"], result  # Inductor compiled C++ (no InvalidCxxCompiler)
    assert result["compiled"] == pytest.approx(result["eager"], rel=1e-4)
    assert result["compiled_ms"] < result["eager_ms"], result
    print(
        f"first call {result['first_s']:.1f} s; eager {result['eager_ms']:.2f} ms, "
        f"compiled {result['compiled_ms']:.2f} ms"
    )
