"""SECURITY.md's claims, tried on real containers of every Docker variant's image."""

from __future__ import annotations

import asyncio
import json
import os
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.image.conftest import TOKEN, api, as_invoke_lab_does, host_port, work_dir

pytestmark = pytest.mark.slow

HEALTH_INTERVAL = 5  # seconds, docker/Dockerfile's HEALTHCHECK --interval
# A .pth file runs at every interpreter start of the venv: it notes each UID that ran it.
HOOK = "import os; open(f'/tmp/hook-ran-as-{os.getuid()}', 'w').close()\n"
SITE = "/opt/venv/lib/python3.11/site-packages"

START_MODES = {
    "as invoke lab": lambda work: as_invoke_lab_does(work, TOKEN),
    "as root, dropping to DLLAB_UID": lambda work: {
        "user": "root",
        "environment": {"DLLAB_UID": "1000", "JUPYTER_TOKEN": TOKEN},
        "ports": {"8888/tcp": ("127.0.0.1", None)},
        "volumes": {str(work): {"bind": "/work"}},
    },  # fmt: skip
}


def run_as_lab(container, command: list[str]) -> str:
    code, out = container.exec_run(command, user="1000:100")
    assert code == 0, out.decode()
    return out.decode()


@pytest.mark.parametrize("mode", START_MODES)
def test_a_pth_hook_planted_in_the_venv_never_runs_as_root(containers, image, tmp_path, mode):
    """The learner writes a .pth hook into the venv; over three health intervals it runs only as
    the learner, never as root, and `docker top` shows no UID 0."""
    container = containers.run(image, **START_MODES[mode](work_dir(tmp_path)))
    containers.wait_healthy(container)
    run_as_lab(container, ["bash", "-c", f'printf %s "{HOOK}" > {SITE}/zz-hook.pth'])
    run_as_lab(container, ["python", "-c", "pass"])  # the hook is live: it runs for the learner
    time.sleep(3 * HEALTH_INTERVAL + 1)
    ran = run_as_lab(container, ["ls", "/tmp"]).split()
    assert "hook-ran-as-1000" in ran and "hook-ran-as-0" not in ran, ran
    container.reload()
    assert container.attrs["State"]["Health"]["Status"] == "healthy"
    top = container.top(ps_args="-o pid,uid,comm")
    assert all(row[1] != "0" for row in top["Processes"]), top


def test_no_set_id_programs_and_nothing_root_runs_is_writable(containers, image):
    """No setuid/setgid file; the entrypoint, health check, tini and system python are root's
    alone. (Looked at as root, with bash as the entrypoint, so that no folder is hidden.)"""
    code, out = containers.output(image, ["-c", (
        "find / -xdev -perm /6000 -type f; "
        "find /usr/local/bin /usr/bin/tini /usr/bin/python3* /usr/lib/python3.11 /etc/profile.d "
        "/etc/jupyter \\( ! -user root -o -perm /022 \\) ! -type l -print"
    )], user="root", entrypoint=["/bin/bash"])  # fmt: skip
    assert code == 0 and out.strip() == "", out


def test_the_token_is_in_no_process_environment_not_even_a_kernels(lab):
    """Jupyter has the token from a private file: neither the server's nor a kernel's environment
    or argv holds it, so `os.environ` in a notebook cannot leak it. (Read from the host's /proc.)"""
    api(lab, "/api/kernels", "POST", {"name": "python3"})
    time.sleep(3)
    seen = {}
    for pid, command in ((row[0], row[-1]) for row in lab.top(ps_args="-o pid,args")["Processes"]):
        try:
            seen[command] = (
                Path(f"/proc/{pid}/environ").read_bytes()
                + Path(f"/proc/{pid}/cmdline").read_bytes()
            )
        except OSError:
            pytest.skip("this user cannot read the container's /proc entries from the host")
    assert any("ipykernel" in command for command in seen), list(seen)
    assert any("jupyter-lab" in command for command in seen), list(seen)
    leaks = [command for command, text in seen.items() if TOKEN.encode() in text]
    assert leaks == []


@pytest.mark.parametrize(
    "options",
    [{"user": "12345:0"}, {"user": "12345:12345"}, {"read_only": True, "tmpfs": {"/tmp": ""}}],
    ids=["uid-12345-gid-0", "uid-12345-gid-12345", "read-only-root"],
)
def test_it_serves_under_any_uid_and_a_read_only_root(containers, image, options):
    """As Kubernetes, OpenShift or a hub may run it: an arbitrary UID, or a read-only root."""
    container = containers.run(
        image, ports={"8888/tcp": ("127.0.0.1", None)}, environment={"JUPYTER_TOKEN": TOKEN},
        **options,
    )  # fmt: skip
    containers.wait_healthy(container, timeout=90)
    assert api(container, "/api/status")["started"]


def test_a_jupyterlab_terminal_is_a_login_shell_that_finds_the_venv(lab):
    """A real terminal of the running server (a login shell) finds python, pip and jupyter."""
    from tornado.websocket import websocket_connect

    name = api(lab, "/api/terminals", "POST", {})["name"]

    async def session() -> str:
        url = f"ws://127.0.0.1:{host_port(lab)}/terminals/websocket/{name}?token={TOKEN}"
        ws = await websocket_connect(url)
        ws.write_message(json.dumps(
            ["stdin", "shopt -q login_shell && echo LOGIN-$((6*7)); command -v python pip jupyter; echo END-$((6*7))\r"]
        ))  # fmt: skip
        seen = ""
        deadline = time.monotonic() + 30
        while "END-42" not in seen and time.monotonic() < deadline:
            message = await asyncio.wait_for(ws.read_message(), timeout=30)
            if message is None:
                break
            kind, *payload = json.loads(message)
            seen += payload[0] if kind == "stdout" else ""
        ws.close()
        return seen

    seen = asyncio.run(session())
    assert "LOGIN-42" in seen, seen
    for tool in ("python", "pip", "jupyter"):
        assert f"/opt/venv/bin/{tool}" in seen, seen


def test_threads_follow_the_containers_cpu_limit(containers, image):
    """With --cpus 1, torch, BLAS, TF and XLA are told to use one thread; without, the cores."""
    probe = ["python", "-c", (
        "import os, torch, threadpoolctl\n"
        "blas = {p['num_threads'] for p in threadpoolctl.threadpool_info()}\n"
        "print(torch.get_num_threads(), max(blas), os.environ.get('TF_NUM_INTRAOP_THREADS'),\n"
        "      'intra_op_parallelism_threads=1' in os.environ.get('XLA_FLAGS', ''))\n"
    )]  # fmt: skip
    code, out = containers.output(image, probe, nano_cpus=1_000_000_000)
    assert code == 0, out
    assert out.split()[-4:] == ["1", "1", "1", "True"], out
    cores = len(os.sched_getaffinity(0))
    if cores > 1:
        code, out = containers.output(image, probe)
        assert code == 0 and out.split()[-4] == str(cores), out


def test_tensorboard_is_behind_the_labs_login(lab):
    """/tensorboard/ (jupyter-server-proxy) needs the lab's token: 403 without, TensorBoard with."""
    base = f"http://127.0.0.1:{host_port(lab)}/tensorboard/"
    assert "/login" in urllib.request.urlopen(base, timeout=30).url  # sent to log in first
    page = urllib.request.urlopen(f"{base}?token={TOKEN}", timeout=90).read().decode()
    assert "<tf-tensorboard" in page or "TensorBoard" in page


def test_health_check_honours_a_hubs_service_prefix(containers, image):
    """Spawned by a hub at /user/ann/, the container still reports healthy."""
    container = containers.run(
        image, ["jupyter", "lab", "--ServerApp.base_url=/user/ann/"],
        environment={"JUPYTERHUB_SERVICE_PREFIX": "/user/ann/", "JUPYTER_TOKEN": TOKEN},
    )  # fmt: skip
    containers.wait_healthy(container)


def test_learner_output_never_enters_the_build_context(client, tmp_path):
    """.dockerignore keeps work/, runs/ and checkpoints out wherever they sit, not only at the root."""
    from dllab.variants import ROOT

    context = tmp_path / "context"
    for path in ("labs/ok.py", "labs/runs/events.log", "deep/er/work/mine.ipynb",
                 "labs/checkpoints/step1", "labs/model.keras", "work/top.ipynb"):  # fmt: skip
        (context / path).parent.mkdir(parents=True, exist_ok=True)
        (context / path).write_text("x")
    (context / ".dockerignore").write_text((ROOT / ".dockerignore").read_text())
    (context / "Dockerfile").write_text("FROM scratch\nCOPY . /ctx/\n")
    image, _ = client.images.build(path=str(context), network_mode="none", rm=True,
                                   labels={"dllab.test": "dockerignore"})  # fmt: skip
    try:
        container = client.containers.create(image.id, command=["none"])
        try:
            with tempfile.TemporaryFile() as tar:
                for chunk in container.export():
                    tar.write(chunk)
                tar.seek(0)
                with tarfile.open(fileobj=tar) as archive:
                    names = set(archive.getnames())
        finally:
            container.remove()
    finally:
        client.images.remove(image.id, force=False)
    assert "ctx/labs/ok.py" in names
    assert not [n for n in names if any(p in n for p in ("runs", "work", "checkpoints", ".keras"))]


def test_a_hubs_api_token_does_not_reach_kernels(containers, image):
    """Started with JUPYTERHUB_API_TOKEN (as a hub starts it), the server keeps it; a kernel,
    where a notebook could print it, does not have it."""
    hub_token = "hub-api-token-for-this-test"
    container = containers.run(
        image, ["jupyter-lab", "--ip=0.0.0.0", "--port=8888", "--no-browser"],
        ports={"8888/tcp": ("127.0.0.1", None)},
        environment={"JUPYTER_TOKEN": TOKEN, "JUPYTERHUB_API_TOKEN": hub_token},
    )  # fmt: skip
    containers.wait_healthy(container)
    api(container, "/api/kernels", "POST", {"name": "python3"})
    time.sleep(3)
    environs = {}
    for pid, command in (
        (row[0], row[-1]) for row in container.top(ps_args="-o pid,args")["Processes"]
    ):
        try:
            environs[command] = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            pytest.skip("this user cannot read the container's /proc entries from the host")
    [kernel] = [text for command, text in environs.items() if "ipykernel" in command]
    assert hub_token.encode() not in kernel
    assert any(hub_token.encode() in text for text in environs.values())  # the server has it
