"""The first screen, for real: a fresh clone's `python3 tasks.py lab` fits on a screen before its
URL and its stop hint works exactly as printed; a user the engine refuses is told about the
docker group, not to start Docker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dllab import accounts, containers
from dllab.variants import ROOT

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def shell(line: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`line` as a user types it into bash: output and errors interleaved, as on their screen."""
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=env, timeout=300, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


def test_a_fresh_clones_lab_fits_a_screen_and_its_stop_hint_works_as_printed(cpu_image, tmp_path):
    """A fresh clone (the tasks' tools already made, as the bootstrap leaves them): at most 40
    lines before the URL, the new work folder said loudly, and the printed stop command, run as
    printed in the same shell, stops the lab and keeps the work."""
    clone = tmp_path / "dllab"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLLAB_")}
    # The shell the user works in: the tasks' tools made once (the bootstrap's two lines are
    # tests/unit/test_tasks.py's), `python3` on PATH.
    env.update(PATH=f"{Path(sys.executable).parent}:{env['PATH']}", DLLAB_BOOTSTRAPPED="1")
    env.pop("DISPLAY", None)
    hint = "python3 tasks.py lab --stop --variant cpu"  # what it must print, in that shell
    started = shell("python3 tasks.py lab", clone, env)
    try:
        lines = started.stdout.splitlines()
        url = next(i for i, line in enumerate(lines) if "?token=" in line)
        assert started.returncode == 0 and url <= 40, started.stdout
        assert any(line.startswith(f"dllab: NEW folder {clone / 'work'}") for line in lines[:url])
        assert re.search(r"\(stop: (.+)\)$", lines[url + 1])[1] == hint
    finally:
        stopped = shell(hint, clone, env)
    assert stopped.returncode == 0, stopped.stdout
    assert "docker stop -t 20" in stopped.stdout and "deprecated" not in stopped.stdout
    assert (clone / "work" / "labs" / "README.md").exists()
    again = shell(hint, clone, env)
    assert again.returncode == 0 and "no cpu lab of yours is running" in again.stdout


@pytest.mark.skipif(os.getuid() != 0, reason="runs a user without the docker group: needs root")
def test_a_user_the_engine_refuses_is_told_about_the_docker_group(tmp_path):
    """Docker runs, but this user may not use its socket: one line naming the docker group and
    newgrp, never 'start Docker'."""
    uid = accounts.free_id(range(122000, 123000))
    done = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable, "-m",
         "invoke", "-r", str(ROOT), "doctor", "--variant", "cpu"],
        capture_output=True, text=True, timeout=120, cwd="/",
        env={**os.environ, "HOME": "/nonexistent", "DLLAB_STATE": "/nonexistent"},
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(
        "dllab: Docker runs, but you may not use it (permission denied on unix://"
    )
    assert "docker group" in line and "newgrp docker" in line and "start Docker" not in line
    assert containers.engine_answers()  # the engine did answer root meanwhile
