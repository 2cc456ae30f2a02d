"""`invoke lab` for real: the URL it prints works, a busy port moves it on, --stop stops it."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from dllab.variants import ROOT


def invoke(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)  # fmt: skip


@pytest.fixture
def running_lab(cpu_image, tmp_path):
    """`invoke lab` on a port that is taken, so it must say so and use the next one."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    work = tmp_path / "work"
    try:
        result = invoke("lab", "--port", str(port), "--work", str(work))
        yield result, port, work
    finally:
        invoke("lab", "--stop")
        busy.close()


def test_invoke_lab_prints_a_working_url_on_the_next_free_port(running_lab):
    """The busy port is reported, the printed URL answers with its token, and not without it."""
    result, port, work = running_lab
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"port {port} is busy: using" in result.stderr
    url = re.search(r"http://127\.0\.0\.1:(\d+)/lab\?token=(\w+)", result.stdout)
    assert url and int(url.group(1)) != port
    api = f"http://127.0.0.1:{url.group(1)}/api/status"
    assert urllib.request.urlopen(f"{api}?token={url.group(2)}", timeout=5).status == 200
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(api, timeout=5)
    assert denied.value.code == 403
    assert (work / "labs" / "README.md").exists()  # the labs were copied into the work directory


def test_a_second_lab_is_refused_and_stop_keeps_the_work_directory(running_lab):
    """While one lab runs, another says so; after --stop the work directory is still there."""
    result, _, work = running_lab
    assert result.returncode == 0, result.stderr
    again = invoke("lab")
    assert again.returncode == 2 and "already running" in again.stderr
    (work / "mine.ipynb").write_text("{}")
    stopped = invoke("lab", "--stop")
    assert stopped.returncode == 0
    assert (work / "mine.ipynb").read_text() == "{}" and (work / "labs").is_dir()
