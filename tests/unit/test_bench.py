"""dllab bench's pure parts: peaks from the CPU's own report and NVIDIA's figures, timing, Markdown, files."""

from __future__ import annotations

import json

import pytest

from dllab import bench, peaks, report, variants
from dllab.frameworks import Target, timing


def cpuinfo(
    flags: str,
    vendor: str = "GenuineIntel",
    family: str = "6",
    mhz: float = 2000.0,
    siblings: int = 4,
    cores: int = 4,
) -> str:
    """Two processors as /proc/cpuinfo lists them; the second reports a higher clock."""
    block = (
        "processor\t: {i}\nvendor_id\t: {vendor}\ncpu family\t: {family}\n"
        "model name\t: Fake CPU @ 2.00GHz\ncpu MHz\t\t: {mhz}\nsiblings\t: {siblings}\n"
        "cpu cores\t: {cores}\nflags\t\t: {flags}\n\n"
    )
    return "".join(
        block.format(
            i=i,
            vendor=vendor,
            family=family,
            mhz=mhz + i,
            siblings=siblings,
            cores=cores,
            flags=flags,
        )
        for i in range(2)
    )


def test_avx512_peak_counts_16_lanes_and_two_fma_units_and_says_so():
    """An Intel AVX-512 core is 16 float32 lanes x 2 FMA units x 2 FLOP per cycle, stated as an assumption."""
    peak = peaks.cpu_peak(cpuinfo("fpu sse2 avx avx2 fma avx512f"), cpus=4, max_khz=2_000_000)
    assert peak["flops"]["float32"] == pytest.approx(4 * 16 * 2 * 2 * 2.0e9)
    assert "avx512f" in peak["source"]
    assert any("2 AVX-512 FMA units" in a for a in peak["assumptions"])


def test_avx2_peak_counts_8_lanes():
    """An AVX2+FMA core is 8 float32 lanes x 2 FMA units x 2 FLOP per cycle."""
    peak = peaks.cpu_peak(cpuinfo("fpu sse2 avx avx2 fma"), cpus=4, max_khz=3_000_000)
    assert peak["flops"]["float32"] == pytest.approx(4 * 8 * 2 * 2 * 3.0e9)
    assert peak["flops"]["bfloat16"] is None


def test_zen4_counts_one_512_bit_fma_per_cycle():
    """AMD family 25 with AVX-512 (Zen 4) double-pumps 256-bit pipes: half the Intel figure."""
    text = cpuinfo("avx2 fma avx512f", vendor="AuthenticAMD", family="25")
    peak = peaks.cpu_peak(text, cpus=2, max_khz=2_000_000)
    assert peak["flops"]["float32"] == pytest.approx(2 * 16 * 1 * 2 * 2.0e9)
    assert any("Zen 4" in a for a in peak["assumptions"])


def test_clock_falls_back_to_the_highest_cpu_mhz_without_cpufreq():
    """Without cpufreq's max frequency, the highest "cpu MHz" line is the clock, and that is said."""
    peak = peaks.cpu_peak(cpuinfo("avx2 fma", mhz=2500.0), cpus=1, max_khz=None)
    assert peak["flops"]["float32"] == pytest.approx(1 * 8 * 2 * 2 * 2.501e9)
    assert "cpu MHz" in peak["source"]


def test_smt_siblings_do_not_count_as_cores():
    """Four usable CPUs that are two-way SMT siblings are two cores' worth of FMA units."""
    peak = peaks.cpu_peak(cpuinfo("avx2 fma", siblings=8, cores=4), cpus=4, max_khz=1_000_000)
    assert peak["flops"]["float32"] == pytest.approx(2 * 8 * 2 * 2 * 1.0e9)
    assert any("SMT" in a for a in peak["assumptions"])


def test_avx512_bf16_doubles_the_bfloat16_peak():
    """AVX512_BF16 dot products give bfloat16 twice the float32 peak."""
    peak = peaks.cpu_peak(cpuinfo("avx2 fma avx512f avx512_bf16"), cpus=1, max_khz=1_000_000)
    assert peak["flops"]["bfloat16"] == pytest.approx(2 * peak["flops"]["float32"])


def test_cpu_without_simd_flags_has_an_unknown_peak():
    """A /proc/cpuinfo without SIMD flags gives no peak and says why."""
    peak = peaks.cpu_peak("processor\t: 0\n", cpus=1, max_khz=1_000_000)
    assert peak["flops"] == {}
    assert peak["source"].startswith("unknown")


@pytest.mark.parametrize(
    ("name", "float32_tflops", "source"),
    [
        ("NVIDIA H100 80GB HBM3", 67, "SXM"),
        ("NVIDIA H100 PCIe", 51, "PCIe"),
        ("NVIDIA H200", 67, "H200"),
        ("NVIDIA A100-SXM4-80GB", 19.5, "A100"),
        ("NVIDIA L4", 30.3, "L4"),
        ("NVIDIA L40S", 91.6, "L40S"),
        ("NVIDIA GeForce RTX 4090", 82.6, "Ada"),
    ],
)
def test_known_gpu_peak_comes_from_the_named_datasheet(name, float32_tflops, source):
    """A GPU named as the driver reports it maps to its dense vendor figures and their source."""
    peak = peaks.gpu_peak(name)
    assert peak["flops"]["float32"] == pytest.approx(float32_tflops * 1e12)
    assert peak["flops"]["bfloat16"] > peak["flops"]["float32"]
    assert source in peak["source"]


def test_unknown_gpu_peak_is_unknown_not_guessed():
    """A GPU missing from the table, or no name at all, has no peak and says so."""
    for name in ("NVIDIA GeForce GTX 1080", None):
        peak = peaks.gpu_peak(name)
        assert peak["flops"] == {}
        assert peak["source"].startswith("unknown")


def test_bfloat16_is_measured_on_cpu_only_where_the_cpu_supports_it():
    """CPU runs add bfloat16 only with a bf16 CPU flag; CUDA runs measure all four dtypes."""
    assert bench.settings("quick", "cpu", {"avx2"})["dtypes"] == ["float32"]
    assert bench.settings("quick", "cpu", {"avx512_bf16"})["dtypes"] == ["float32", "bfloat16"]
    cuda = bench.settings("full", "cuda", set())
    assert cuda["dtypes"] == ["float32", "tfloat32", "bfloat16", "float16"]
    assert cuda["n"] > bench.settings("full", "cpu", set())["n"]


def test_mps_measures_float32_and_float16():
    """Apple GPUs are measured in the two dtypes Metal runs natively."""
    assert bench.settings("quick", "mps", set())["dtypes"] == ["float32", "float16"]


def test_every_accelerator_has_dtypes_a_matmul_size_and_a_peak_model():
    """An accelerator dllab knows has its matmul dtypes, an n in every mode and a peak model."""
    for accelerator in variants.ACCELERATORS:
        assert peaks.DTYPES[accelerator] and accelerator in peaks.PEAK_MODELS
        assert all(accelerator in sizes for sizes in bench.MATMUL_N.values())


def test_measure_reports_first_call_and_median_within_its_spread():
    """measure() times the first call apart and reports a median between the min and max rates."""
    calls = []
    result = timing.measure(lambda: calls.append(1), lambda _: None, 10.0, bench.MODES["tiny"])
    assert result["first_s"] >= 0
    assert result["min"] <= result["median"] <= result["max"]
    assert len(calls) >= 1 + bench.MODES["tiny"]["warmup"] + bench.MODES["tiny"]["repeats"]


def test_per_dtype_records_a_failing_dtype_and_goes_on():
    """A dtype that raises is recorded with its error; the others are still measured."""

    def run(dtype):
        if dtype == "bfloat16":
            raise TypeError("no bfloat16 here")
        return {"median": 1.0}

    found = timing.per_dtype({"dtypes": ["float32", "bfloat16"], "n": 8}, run)
    assert found["float32"] == {"n": 8, "median": 1.0}
    assert found["bfloat16"] == {"error": "TypeError: no bfloat16 here"}


def entry(median: float) -> dict:
    return {"median": median, "min": median * 0.9, "max": median * 1.1, "first_s": 0.5}


def fake_results() -> dict:
    """A results dict shaped as run() makes it: one measured, one failed, one missing target."""
    return {
        "date": "2026-01-02T03:04:05+00:00",
        "host": "box.lan",
        "platform": "linux-x86_64",
        "in_container": True,
        "variant": "cpu",
        "accelerator": "cpu",
        "command": "dllab bench --quick",
        "device": {
            "name": "Fake CPU",
            "peak": {"flops": {"float32": 200e9, "bfloat16": None}, "source": "made up"},
        },
        "settings": {"dtypes": ["float32", "bfloat16"], "n": 512},
        "results": [
            {
                "target": "torch",
                "installed": True,
                "error": None,
                "version": "2.13.0",
                "import_s": 1.234,
                "matmul": {
                    "float32": {**entry(100e9), "peak_fraction": 0.55},
                    "bfloat16": {"error": "RuntimeError: nope"},
                },
                "mlp": entry(12345.6),
                "cnn": entry(2345.6),
            },
            {"target": "jax", "installed": True, "error": "crashed (exit 1): boom"},
            {"target": "keras-jax", "installed": False, "error": "not installed: no keras"},
        ],
    }


def test_markdown_renders_one_row_per_target_with_the_numbers():
    """The table has a row per target: GFLOP/s and % of peak, samples/s with spread, start-up times."""
    text = report.markdown(fake_results())
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if "|" in line}
    assert "matmul float32 GFLOP/s (best)" in rows["Framework"]
    assert "| 110 | 55% |" in rows["torch"]  # the best repeat, not the median
    assert "12,346 (11,111–13,580)" in rows["torch"]
    assert "| 1.23 | 0.50 / 0.50 |" in rows["torch"]
    assert "not installed" in rows["keras-jax"]
    assert "**Fake CPU**" in text and "float32 200 GFLOP/s" in text


def test_markdown_lists_errors_under_the_table():
    """A failed target and a failed dtype are named, with their errors, below the table."""
    text = report.markdown(fake_results())
    assert "- jax: crashed (exit 1): boom" in text
    assert "- torch matmul bfloat16: RuntimeError: nope" in text


def test_save_writes_json_latest_and_a_png_chart(tmp_path):
    """save() writes the run's JSON, the same JSON as latest.json, and a PNG named in both."""
    path = report.save(fake_results(), tmp_path / "out")
    assert path.name == "bench-box.lan-cpu-20260102T030405Z.json"
    saved = json.loads(path.read_text())
    assert json.loads((tmp_path / "out" / "latest.json").read_text()) == saved
    png = tmp_path / "out" / saved["chart"]
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_chart_draws_a_bar_for_every_measured_dtype_even_without_a_peak():
    """A dtype with no peak figure (bfloat16 on most CPUs) still gets its bar: FLOP/s, not % of peak."""
    results = fake_results()
    torch = results["results"][0]
    torch["matmul"]["bfloat16"] = entry(40e9)  # measured, but the device has no bfloat16 peak
    figure = report.figure(results)
    bars = {
        container.get_label(): [bar.get_height() for bar in container]
        for container in figure.axes[2].containers
    }
    assert bars == {"float32": [pytest.approx(110)], "bfloat16": [pytest.approx(44)]}
    labels = [text.get_text() for text in figure.axes[2].texts]
    assert labels == ["55%", ""]  # % of peak only where the peak is known


def test_matmul_is_many_short_repeats_and_its_figure_the_best(monkeypatch):
    """Each matmul is timed in short repeats, and its % of peak is the best one's, as the reference's.

    A GPU under a long full load lowers its clock to stay within its power limit: on an H200,
    7 repeats of 1 s gave a bfloat16 median of 662 TFLOP/s against 774 for the best short loop
    of plain torch.matmul; the datasheet's peak is at the boost clock.
    """
    for mode in bench.MODES:
        repeats = bench.settings(mode, "cuda", set())["matmul_repeats"]
        assert repeats["repeat_s"] <= 0.05 and repeats["repeats"] >= 2
    assert bench.MATMUL_REPEATS["full"]["repeats"] >= 20

    def measured(target, accelerator, spec, log):
        rate = {"median": 660e12, "min": 650e12, "max": 770e12, "first_s": 0.1}
        return {
            "target": target.name,
            "installed": True,
            "device_kind": "cuda",
            "device_name": "NVIDIA H200",
            "matmul": {"bfloat16": {"n": 8192, **rate}},
        }

    monkeypatch.setattr(bench, "measure_target", measured)
    found = bench.run("cuda", "full", [Target("torch")], log=None)
    entry = found["results"][0]["matmul"]["bfloat16"]
    assert found["device"]["peak"]["flops"]["bfloat16"] == 989.5e12
    assert entry["peak_fraction"] == pytest.approx(770e12 / 989.5e12)


def test_deterministic_flag_reaches_every_child(monkeypatch):
    """--deterministic is passed to each framework's bench() in its settings."""
    assert bench.settings("tiny", "cpu", set())["deterministic"] is False
    assert bench.settings("tiny", "cpu", set(), deterministic=True)["deterministic"] is True
    assert bench.build_parser().parse_args(["--deterministic"]).deterministic


def test_bad_promised_accelerator_is_a_one_line_error(monkeypatch, capsys):
    """An unknown $DLLAB_ACCELERATOR stops before measuring anything, with exit code 2."""
    monkeypatch.setenv("DLLAB_ACCELERATOR", "tpu")
    assert bench.main([]) == 2
    assert "unknown accelerator 'tpu'" in capsys.readouterr().err
