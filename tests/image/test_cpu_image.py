"""The cpu image, run for real: every framework on the CPU, training, the labs in a browser.

What every variant's image does alike (JupyterLab, users, mounts, logs) is test_lab_image.py."""

from __future__ import annotations

import json

import pytest

from tests.image.conftest import TOKEN, as_invoke_lab_does, host_port, work_dir


@pytest.fixture
def lab(containers, cpu_image, tmp_path):
    """A cpu JupyterLab container started as `invoke lab` starts one, healthy."""
    container = containers.run(cpu_image, **as_invoke_lab_does(work_dir(tmp_path), TOKEN))
    containers.wait_healthy(container)
    return container


def test_doctor_inside_reports_cpu_for_every_framework(containers, cpu_image):
    """`dllab doctor --expect cpu --json` inside the image: exit 0, every framework on the CPU."""
    code, out = containers.output(cpu_image, ["python", "-m", "dllab", "doctor", "--json"])
    assert code == 0, out
    report = json.loads(out[out.index("{") :])
    assert report["expect"] == "cpu" and report["problems"] == []
    names = {r["target"] for r in report["frameworks"] if r["installed"]}
    assert {
        "tensorflow",
        "torch",
        "jax",
        "keras-tensorflow",
        "keras-torch",
        "keras-jax",
    } <= names


def test_a_training_step_inside_passes_for_every_framework(containers, cpu_image):
    """doctor --train runs a real training step per framework in the image, all on the CPU."""
    code, out = containers.output(
        cpu_image, ["python", "-m", "dllab", "doctor", "--train", "--json"]
    )
    assert code == 0, out
    report = json.loads(out[out.index("{") :])
    runs = [r["train"] for r in report["frameworks"] if r["installed"]]
    assert len(runs) == 6 and all(
        run["failures"] == [] and run["device_kind"] == "cpu" for run in runs
    )


def browser_dom(url: str) -> str:
    """The DOM a real headless Chromium renders for `url` (Debian's chromium, no download)."""
    import shutil
    import subprocess
    import tempfile

    from tests.support import missing

    chromium = shutil.which("chromium")
    if not chromium:
        missing("browser", "Debian's chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=20000", "--dump-dom", url],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    return proc.stdout


def test_the_labs_index_renders_in_jupyterlab_and_labs_open_as_notebooks(lab):
    """In a browser, labs/README.md shows rendered, and a lab's .py opens as a notebook."""
    base = f"http://127.0.0.1:{host_port(lab)}/lab/tree/labs"
    index = browser_dom(f"{base}/README.md?token={TOKEN}")
    assert "<h1" in index and "dllab labs" in index and "01_tensors_autodiff" in index
    notebook = browser_dom(f"{base}/01_tensors_autodiff.py?token={TOKEN}")
    assert "jp-Notebook" in notebook and "GradientTape" in notebook
