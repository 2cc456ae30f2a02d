"""`invoke lab` for real: the URL it prints works, the token never shows in any argv, a busy port
moves it on, odd work folders are literal, --stop stops gracefully and keeps the work."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from dllab.variants import ROOT

pytestmark = pytest.mark.slow


def invoke(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """A real `invoke` process with this test's environment (its own DLLAB_INSTANCE, read now)
    and no desktop, so no browser opens on a developer's machine."""
    headless = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    return subprocess.run([sys.executable, "-m", "invoke", "-r", str(ROOT), *args],
                          capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**headless, **(env or {})})  # fmt: skip


@pytest.fixture
def instance(monkeypatch, tmp_path):
    """A lab instance of this test's own (DLLAB_INSTANCE), so a lab you run is never touched."""
    monkeypatch.setenv("DLLAB_INSTANCE", f"test-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("DLLAB_STATE", str(tmp_path / "state"))
    yield
    invoke("lab", "--stop")


class ArgvWatcher(threading.Thread):
    """Reads every process's argv in /proc, as any local user can, while a task runs."""

    def __init__(self):
        super().__init__(daemon=True)
        self.seen: set[bytes] = set()
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            for pid in filter(str.isdigit, os.listdir("/proc")):
                with contextlib.suppress(OSError):  # a process that ended meanwhile
                    self.seen.add(Path(f"/proc/{pid}/cmdline").read_bytes())


@pytest.fixture
def running_lab(cpu_image, tmp_path, instance):
    """`invoke lab` on a port that is taken, so it must say so and use the next one."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    work = tmp_path / "work"
    watcher = ArgvWatcher()
    watcher.start()
    try:
        result = invoke("lab", "--port", str(port), "--work", str(work))
        watcher.done.set()
        yield result, port, work, watcher.seen
    finally:
        busy.close()


def test_invoke_lab_prints_a_working_url_on_the_next_free_port(running_lab):
    """The busy port is reported, the printed URL answers with its token, and not without it."""
    result, port, work, _ = running_lab
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"port {port} is busy: using" in result.stderr
    url = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=([\w-]+)", result.stdout)
    assert url and int(url.group(1)) != port
    api = f"http://127.0.0.1:{url.group(1)}/api/status"
    assert urllib.request.urlopen(f"{api}?token={url.group(2)}", timeout=5).status == 200
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(api, timeout=5)
    assert denied.value.code == 403
    assert (work / "labs" / "README.md").exists()  # the labs were copied into the work directory
    assert (work.stat().st_uid, work.stat().st_gid) == (1000, 1000) or os.getuid() != 0


def test_the_token_is_on_no_command_line_while_the_lab_starts(running_lab):
    """Every argv on this machine, read from /proc during `invoke lab`, is free of the token."""
    result, _, _, seen = running_lab
    token = re.search(r"\?token=([\w-]+)", result.stdout).group(1).encode()
    assert len(seen) > 10 and not [argv for argv in seen if token in argv]
    assert any(b"docker\x00run" in argv for argv in seen)  # the watcher did see the docker run


def test_a_second_lab_reprints_the_url_and_stop_keeps_the_work_directory(running_lab):
    """While your lab runs, `invoke lab` shows it again; after --stop your work is still there."""
    result, _, work, _ = running_lab
    assert result.returncode == 0, result.stderr
    again = invoke("lab")
    assert again.returncode == 0 and "already running" in again.stdout
    assert re.search(r"\?token=([\w-]+)", result.stdout).group(1) in again.stdout
    (work / "mine.ipynb").write_text("{}")
    stopped = invoke("lab", "--stop")
    assert stopped.returncode == 0 and "docker stop --time" in stopped.stdout
    assert (work / "mine.ipynb").read_text() == "{}" and (work / "labs").is_dir()


@pytest.mark.parametrize("name", ["my work", "w;touch INJECTED", "$(touch INJECTED)", "-dash"])
def test_odd_work_folder_names_are_used_literally(cpu_image, tmp_path, instance, name):
    """A work folder with spaces, ;, $( ) or a leading - is that folder: no command runs."""
    result = invoke("lab", f"--work={name}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / name / "labs" / "README.md").exists()
    assert not list(tmp_path.rglob("INJECTED"))


def test_a_work_folder_the_lab_user_cannot_write_is_refused(cpu_image, tmp_path, instance):
    """Someone else's read-only folder: one line, exit 2, and its owner is unchanged."""
    work = tmp_path / "theirs"
    work.mkdir(mode=0o755)
    os.chown(work, 4321, 4321)
    result = invoke("lab", "--work", str(work))
    assert result.returncode == 2 and result.stderr.strip().startswith("dllab: the lab user")
    assert len(result.stderr.strip().splitlines()) == 1
    assert work.stat().st_uid == 4321


@pytest.mark.skipif(os.getuid() != 0, reason="shows what `sudo invoke lab` does: needs root")
def test_under_sudo_the_lab_runs_as_the_user_who_ran_sudo(cpu_image, client, tmp_path, instance):
    """Root with SUDO_UID=4321: the container's processes are 4321, the new work folder theirs."""
    sudo = {"SUDO_UID": "4321", "SUDO_GID": "4321"}
    try:
        result = invoke("lab", "--work", str(tmp_path / "w"), env=sudo)
        assert result.returncode == 0, result.stdout + result.stderr
        name = re.search(r"--name (\S+)", result.stdout).group(1)
        top = client.containers.get(name).top(ps_args="-o pid,uid")["Processes"]
        assert {row[1] for row in top} == {"4321"}
        assert (tmp_path / "w").stat().st_uid == 4321
    finally:
        invoke("lab", "--stop", env=sudo)


@pytest.mark.parametrize(
    "args, says",
    [
        (["lab", "--port", "0"], "must be a port number"),
        (["lab", "--port", "abc"], "must be a port number"),
        (["lab", "--port", "70000"], "must be a port number"),
        (["lab", "--variant", "gpu"], "unknown variant 'gpu'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_at_once(args, says, instance):
    """Bad flags stop before any container starts: one `dllab:` line, exit 2."""
    result = invoke(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().startswith("dllab: ") and says in result.stderr
    assert "Traceback" not in result.stderr
