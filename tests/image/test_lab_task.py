"""`invoke lab` for real: the URL it prints works, the token never shows in any argv, a busy port
moves it on, odd work folders are literal, --stop stops gracefully and keeps the work."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from dllab import accounts, containers, runner
from dllab.variants import ROOT

pytestmark = pytest.mark.slow


def invoke(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """A real `invoke` process with this test's environment (its own DLLAB_INSTANCE, read now)
    and no desktop, so no browser opens on a developer's machine."""
    headless = {k: v for k, v in os.environ.items()
                if k not in ("DISPLAY", "WAYLAND_DISPLAY", "DLLAB_TASKS_PROGRAM")}  # fmt: skip
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
    assert work.stat().st_mode & 0o777 == 0o700  # new work folders are private
    # Jupyter writes notebooks under the server's umask 077: private to their owner too.
    assert (work / "labs" / "README.md").stat().st_mode & 0o077 == 0
    if os.getuid() == 0:  # plain root: the lab runs as an ID no account here has, and says which
        uid = work.stat().st_uid
        assert uid in accounts.ROOT_LAB and not accounts.is_account(uid)
        assert f"the lab runs as UID {uid}, which no account here has" in result.stderr


def test_the_token_is_on_no_command_line_while_the_lab_starts(running_lab):
    """Every argv on this machine, read from /proc during `invoke lab`, is free of the token."""
    result, _, _, seen = running_lab
    token = re.search(r"\?token=([\w-]+)", result.stdout).group(1).encode()
    assert len(seen) > 10 and not [argv for argv in seen if token in argv]
    assert any(b"docker\x00run" in argv for argv in seen)  # the watcher did see the docker run


def test_no_docker_exec_inherits_the_token(running_lab):
    """The token is in a 0600 file, not the container's configured environment: neither `docker
    inspect` nor an operator's `docker exec` (the HEALTHCHECK's too) sees it."""
    result, _, _, _ = running_lab
    token = re.search(r"\?token=([\w-]+)", result.stdout).group(1)
    name = re.search(r"--name (\S+)", result.stdout + result.stderr).group(1)
    run = runner.Runner()
    assert token not in run.checked(containers.inspect_command(name, "{{json .Config.Env}}"))
    assert token not in run.checked(["docker", "exec", name, "/usr/bin/env"])
    assert token not in run.checked(["docker", "exec", "--user", "0", name, "/usr/bin/env"])


def test_a_second_lab_reprints_the_url_and_stop_keeps_the_work_directory(running_lab, tmp_path):
    """While your lab runs, `invoke lab` shows it again (another --work: stop it first, the exact
    command); after --stop your work is still there."""
    result, _, work, _ = running_lab
    assert result.returncode == 0, result.stderr
    other = invoke("lab", "--work", str(tmp_path / "other"))
    assert other.returncode == 2 and other.stderr.strip().endswith(
        f"stop it first: DLLAB_INSTANCE={os.environ['DLLAB_INSTANCE']} invoke lab --stop --variant cpu"
    )
    assert not (tmp_path / "other").exists()
    again = invoke("lab", "--work", str(work))
    assert again.returncode == 0 and "already running" in again.stdout
    assert re.search(r"\?token=([\w-]+)", result.stdout).group(1) in again.stdout
    (work / "mine.ipynb").write_text("{}")
    stopped = invoke("lab", "--stop")
    assert stopped.returncode == 0 and "docker stop -t 20" in stopped.stdout
    assert "deprecated" not in stopped.stderr  # no warning leaks from docker
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
        (["lab", "--work", ""], "--work is empty"),
        (["lab", "--work", "a\nb"], "holds a control character"),
        (["lab", "--work", "x" * 5000], "a path must stay under 4096"),
        (["lab", "--work", "y" * 300], "a folder name over 255 bytes"),
        (["lab", "--work", str(ROOT)], "holds this checkout"),
        (["lab", "--work", "no-such-parent/work"], "does not exist; check the path"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_at_once(args, says, instance, tmp_path):
    """Bad flags stop before anything is made: one `dllab:` line, exit 2, no folder, no container."""
    before = set(tmp_path.iterdir())
    result = invoke(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().startswith("dllab: ") and says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert set(tmp_path.iterdir()) == before
    assert not runner.Runner()(containers.list_command(containers.Owner.current().filters())).out.split()  # fmt: skip


@pytest.mark.parametrize("bad", ["a b", "../x", "UPPER", "x" * 40])
def test_a_bad_instance_name_is_one_line_before_anything_is_made(bad, tmp_path, monkeypatch):
    """DLLAB_INSTANCE names containers: one that cannot is refused before the work folder exists."""
    monkeypatch.setenv("DLLAB_STATE", str(tmp_path / "state"))
    result = invoke("lab", "--work", str(tmp_path / "w"), env={"DLLAB_INSTANCE": bad})
    assert result.returncode == 2 and result.stderr.startswith("dllab: DLLAB_INSTANCE=")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "w").exists() and not (tmp_path / "state").exists()


@pytest.mark.skipif(os.getuid() != 0, reason="runs a second, unprivileged user: needs root")
def test_a_folder_you_cannot_reach_is_one_line_for_a_non_root_user():
    """`invoke lab --work /root/nope` as a user who cannot look into /root: one line, exit 2."""
    uid = accounts.free_id(range(120000, 121000))
    home = Path(tempfile.mkdtemp(prefix="dllab-user-"))  # reachable by that user, unlike tmp_path
    os.chown(home, uid, uid)
    result = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable, "-m",
         "invoke", "-r", str(ROOT), "lab", "--work", "/root/nope"],
        capture_output=True, text=True, timeout=120, cwd=home,
        env={**os.environ, "HOME": str(home), "DLLAB_STATE": str(home / "state"),
             "DLLAB_INSTANCE": "unreachable"},
    )  # fmt: skip
    shutil.rmtree(home)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        "dllab: --work '/root/nope': permission denied; choose a folder you can reach"
    ]
