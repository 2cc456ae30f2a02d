"""The cpu image, run for real: devices, training, JupyterLab, users, mounts, logs."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import pytest

TOKEN = "dllab-test-token"


def http_status(url: str) -> int:
    try:
        return urllib.request.urlopen(url, timeout=5).status
    except urllib.error.HTTPError as err:
        return err.code


def host_port(container) -> int:
    container.reload()
    return int(container.ports["8888/tcp"][0]["HostPort"])


@pytest.fixture
def lab(containers, cpu_image, tmp_path):
    """A JupyterLab container as `invoke lab` starts one, healthy, on a random loopback port."""
    work = tmp_path / "work"
    work.mkdir()
    os.chown(work, 1000, 1000)
    container = containers.run(
        cpu_image, ports={"8888/tcp": ("127.0.0.1", None)},
        environment={"JUPYTER_TOKEN": TOKEN}, volumes={str(work): {"bind": "/work"}},
    )  # fmt: skip
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
        "keras[tensorflow]",
        "keras[torch]",
        "keras[jax]",
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


def test_jupyterlab_is_healthy_and_needs_the_token(lab):
    """Healthy by the HEALTHCHECK; the API answers 200 with the token and 403 without."""
    base = f"http://127.0.0.1:{host_port(lab)}"
    assert http_status(f"{base}/api/status?token={TOKEN}") == 200
    assert http_status(f"{base}/api/status") == 403
    assert http_status(f"{base}/lab/tree/labs/README.md?token={TOKEN}") == 200


def test_tini_is_pid_1_and_nothing_runs_as_root(lab):
    """PID 1 is tini, and every process in the container belongs to the lab user."""
    code, out = lab.exec_run(["python", "-c", (
        "import os\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    status = open(f'/proc/{pid}/status').read().splitlines()\n"
        "    fields = dict(line.split(':', 1) for line in status)\n"
        "    print(pid, fields['Name'].strip(), fields['Uid'].split()[0])\n"
    )])  # fmt: skip
    rows = [line.split() for line in out.decode().splitlines()]
    assert ["1", "tini", "1000"] in rows, rows
    assert all(uid != "0" for _, _, uid in rows), rows


def test_files_written_to_a_bind_mount_belong_to_the_host_user(containers, cpu_image, tmp_path):
    """Started as invoke lab does with host UID/GID 1234, files it writes are owned by 1234."""
    work = tmp_path / "work"
    work.mkdir()
    os.chown(work, 1234, 1234)
    code, out = containers.output(
        cpu_image, ["bash", "-c", "touch /work/made-inside && id -u && id -g"], user="root",
        environment={"DLLAB_UID": "1234", "DLLAB_GID": "1234"}, volumes={str(work): {"bind": "/work"}},
    )  # fmt: skip
    assert code == 0, out
    made = work / "made-inside"
    assert (made.stat().st_uid, made.stat().st_gid) == (1234, 1234)
    assert out.split()[-2:] == ["1234", "1234"]


def test_root_is_refused_as_the_lab_user(containers, cpu_image):
    """DLLAB_UID=0 stops with one line instead of running Jupyter as root."""
    code, out = containers.output(cpu_image, ["true"], user="root", environment={"DLLAB_UID": "0"})
    assert code == 64 and "refusing to run the lab as root" in out


def test_the_learners_edits_survive_the_container_and_a_new_one(containers, cpu_image, tmp_path):
    """An edited lab and a new notebook outlive `docker rm`; a new container does not overwrite them."""
    work = tmp_path / "work"
    work.mkdir()
    os.chown(work, 1000, 1000)
    mount = {str(work): {"bind": "/work"}}
    code, out = containers.output(
        cpu_image,
        ["bash", "-c", "echo mine > /work/labs/README.md && echo nb > /work/mine.ipynb"],
        volumes=mount,
    )
    assert code == 0, out
    containers.remove_all()
    code, out = containers.output(
        cpu_image, ["cat", "/work/labs/README.md", "/work/mine.ipynb"], volumes=mount
    )
    assert code == 0 and out.split() == ["mine", "nb"], out
    assert len(list((work / "labs").glob("*.py"))) >= 1  # the other labs were still copied in


def test_startup_logs_have_no_error(lab):
    """JupyterLab's start-up log has no ERROR or CRITICAL line."""
    logs = lab.logs().decode()
    assert "Jupyter Server" in logs and "is running at" in logs
    bad = [line for line in logs.splitlines() if "[E " in line or "[C " in line or "ERROR" in line]
    assert bad == []


def test_labels_name_the_variant_lock_and_revision(client, cpu_image):
    """The image says which variant, lock digest and git revision it was built from."""
    labels = client.images.get(cpu_image).labels
    assert labels["dllab.variant"] == "cpu"
    assert labels["dllab.lock-digest"].startswith("sha256:")
    assert labels["org.opencontainers.image.revision"] not in ("", "unknown")


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
