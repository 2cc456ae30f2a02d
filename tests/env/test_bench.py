"""A real `dllab bench --quick` run in this environment, shrunk further by the hidden --tiny flag."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dllab.frameworks import TARGETS, Target

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One run for the whole module: its exit code, output folder, stdout and saved results."""
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "dllab.bench", "--quick", "--tiny", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    latest = out / "latest.json"
    results = json.loads(latest.read_text()) if latest.exists() else None
    return proc, out, results


def test_bench_exits_cleanly_and_writes_latest_json(run):
    """The run exits 0 and leaves latest.json, a copy of its timestamped JSON file."""
    proc, out, results = run
    assert proc.returncode == 0, proc.stderr[-3000:]
    (stamped,) = out.glob("bench-*.json")
    assert json.loads(stamped.read_text()) == results


def test_every_installed_framework_is_measured_with_positive_numbers(run):
    """Each installed target has positive FLOP/s, samples/s and start-up times; others say not installed."""
    _, _, results = run
    by_name = {r["target"]: r for r in results["results"]}
    assert set(by_name) == {t.name for t in TARGETS}
    for target in TARGETS:
        r = by_name[target.name]
        if not target.installed():
            assert r["installed"] is False and r["error"].startswith("not installed")
            continue
        assert r["error"] is None, r
        assert r["device_kind"] == results["accelerator"]
        assert r["version"] and r["import_s"] > 0
        for dtype in results["settings"]["dtypes"]:
            assert r["matmul"][dtype]["median"] > 0, (target.name, dtype, r["matmul"][dtype])
        for model in ("mlp", "cnn"):
            assert r[model]["median"] > 0 and r[model]["first_s"] > 0
            assert r[model]["min"] <= r[model]["median"] <= r[model]["max"]


def test_results_describe_where_they_were_measured(run):
    """The JSON names the device, its peak's source, the platform, container and command."""
    _, _, results = run
    assert results["device"]["name"]
    assert results["device"]["peak"]["source"]
    for key in ("platform", "in_container", "variant", "lock_digest", "date", "python"):
        assert key in results
    assert results["command"].startswith("dllab bench --quick")


def test_chart_is_a_readable_png(run):
    """The run's chart is a non-empty PNG that matplotlib reads back as an image."""
    import matplotlib.image

    _, out, results = run
    png = out / results["chart"]
    assert png.stat().st_size > 0
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    height, width, _ = matplotlib.image.imread(png).shape
    assert height > 0 and width > 0


def test_markdown_table_is_printed_with_a_row_per_target(run):
    """stdout ends with the Markdown table: a header and one row per target."""
    proc, _, _ = run
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| Framework |")
    assert {row.split(" | ")[0].removeprefix("| ") for row in rows[1:]} == {t.name for t in TARGETS}


@pytest.mark.skipif(not Target("torch").installed(), reason="torch is not installed here")
def test_only_one_target_with_json_on_stdout(tmp_path):
    """--only torch --print-json measures torch alone and prints the results as JSON."""
    proc = subprocess.run(
        [sys.executable, "-m", "dllab.bench", "--tiny", "--only", "torch", "--print-json"]
        + ["--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    results = json.loads(proc.stdout)
    assert [r["target"] for r in results["results"]] == ["torch"]
    assert results == json.loads((tmp_path / "latest.json").read_text())


@pytest.mark.skipif(not Target("jax").installed(), reason="jax is not installed here")
def test_jax_asks_for_float32_precision_only_for_float32_inputs(monkeypatch):
    """JAX's bfloat16 matmul keeps its own precision: asking float32 of it could compute it in float32."""
    import jax

    from dllab import bench
    from dllab.frameworks import jax as plugin

    asked = []
    real = jax.default_matmul_precision
    monkeypatch.setattr(jax, "default_matmul_precision", lambda p: asked.append(p) or real(p))
    spec = {**bench.settings("tiny", "cpu", set()), "dtypes": ["float32", "tfloat32", "bfloat16"]}
    result = plugin.bench("cpu", json.dumps(spec))
    assert asked == ["float32", "tensorfloat32"]
    assert all("max" in result["matmul"][dtype] for dtype in spec["dtypes"]), result["matmul"]
