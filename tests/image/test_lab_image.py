"""What every Docker variant's image does alike, run for real: JupyterLab, users, mounts, logs."""

from __future__ import annotations

import pytest

from tests.image.conftest import TOKEN, as_invoke_lab_does, host_port, http_status, work_dir


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


def test_files_written_to_a_bind_mount_belong_to_the_host_user(containers, image, tmp_path):
    """Started as invoke lab does with host UID/GID 1234, files it writes are owned by 1234."""
    work = work_dir(tmp_path, 1234, 1234)
    code, out = containers.output(
        image, ["bash", "-c", "touch /work/made-inside && id -u && id -g"],
        **as_invoke_lab_does(work, uid=1234, gid=1234),
    )  # fmt: skip
    assert code == 0, out
    made = work / "made-inside"
    assert (made.stat().st_uid, made.stat().st_gid) == (1234, 1234)
    assert out.split()[-2:] == ["1234", "1234"]


@pytest.mark.parametrize("uid", ["0", "00", "000", "+0", " 0", "0x0", "-0"])
def test_every_spelling_of_root_is_refused_at_once(containers, image, uid):
    """Started as root with DLLAB_UID any spelling of 0 (or not a number): exit 64, one line."""
    code, out = containers.output(
        image, ["true"], timeout=10, user="root", environment={"DLLAB_UID": uid}
    )
    assert code == 64, out
    assert out.strip().startswith("dllab-start: ") and len(out.strip().splitlines()) == 1


def test_the_learners_edits_survive_the_container_and_a_new_one(containers, image, tmp_path):
    """An edited lab and a new notebook outlive `docker rm`; a new container does not overwrite them."""
    work = work_dir(tmp_path)
    options = as_invoke_lab_does(work)
    code, out = containers.output(
        image,
        ["bash", "-c", "echo mine > /work/labs/README.md && echo nb > /work/mine.ipynb"],
        **options,
    )
    assert code == 0, out
    containers.remove_all()
    code, out = containers.output(
        image, ["cat", "/work/labs/README.md", "/work/mine.ipynb"], **options
    )
    assert code == 0 and out.split() == ["mine", "nb"], out
    assert len(list((work / "labs").glob("*.py"))) >= 1  # the other labs were still copied in


def test_startup_logs_have_no_error(lab):
    """JupyterLab's start-up log has no ERROR or CRITICAL line."""
    logs = lab.logs().decode()
    assert "Jupyter Server" in logs and "is running at" in logs
    bad = [line for line in logs.splitlines() if "[E " in line or "[C " in line or "ERROR" in line]
    assert bad == []


def test_labels_name_the_variant_lock_and_revision(client, image):
    """The image says which variant, lock digest and git revision it was built from."""
    labels = client.images.get(image).labels
    assert labels["dllab.variant"] == image.split(":")[1]
    assert labels["dllab.lock-digest"].startswith("sha256:")
    assert labels["org.opencontainers.image.revision"] not in ("", "unknown")


def test_the_learner_can_install_into_the_venv(containers, image, tmp_path):
    """Run as invoke lab runs it (a host UID, group users added), the learner may add packages to
    the venv, as `pip install` does, and import them."""
    code, out = containers.output(image, ["python", "-c", (
        "import os, sysconfig\n"
        "path = os.path.join(sysconfig.get_paths()['purelib'], 'learner_added.py')\n"
        "open(path, 'w').write('ANSWER = 42')\n"
        "import learner_added\n"
        "print(learner_added.ANSWER)\n"
    )], **as_invoke_lab_does(work_dir(tmp_path, 1234, 1234), uid=1234, gid=1234))  # fmt: skip
    assert code == 0 and out.split()[-1] == "42", out
