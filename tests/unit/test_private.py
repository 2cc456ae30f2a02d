"""dllab.private on a real filesystem: files 0600 and folders 0700 from the start, never written
through a symlink, and a new work folder given away race-free, also against someone who keeps
swapping a symlink in (what `sudo invoke lab --work P` meets when another user owns P's parent)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from dllab import accounts, private
from dllab.errors import UserError

ROOT_ONLY = pytest.mark.skipif(os.getuid() != 0, reason="gives folders away and acts as another user: needs root")  # fmt: skip


def test_a_private_file_is_0600_also_where_it_was_looser_and_never_a_symlinks_target(tmp_path):
    """A new file is 0600; an old 0644 one is rewritten 0600; a symlink at the path is refused."""
    path = private.write(tmp_path / "secret", "s3cret\n")
    assert path.stat().st_mode & 0o777 == 0o600 and path.read_text() == "s3cret\n"
    path.chmod(0o644)
    private.write(path, "again\n")
    assert path.stat().st_mode & 0o777 == 0o600
    target = tmp_path / "target"
    target.write_text("untouched")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(OSError):
        private.write(tmp_path / "link", "overwritten?")
    assert target.read_text() == "untouched"


def test_a_private_folder_is_0700_and_a_looser_one_is_tightened(tmp_path):
    folder = private.folder(tmp_path / "a" / "state")
    assert folder.stat().st_mode & 0o777 == 0o700
    folder.chmod(0o755)
    assert private.folder(folder).stat().st_mode & 0o777 == 0o700


def test_a_new_folder_is_0700_and_an_existing_one_is_refused(tmp_path):
    private.make_folder(tmp_path / "work", os.getuid(), os.getgid())
    assert (tmp_path / "work").stat().st_mode & 0o777 == 0o700
    with pytest.raises(UserError, match="appeared while it was being made"):
        private.make_folder(tmp_path / "work", os.getuid(), os.getgid())


SWAPPER = """
import os, sys
work, victim, stop = sys.argv[1], sys.argv[2], sys.argv[3]
moved, swaps = work + ".moved", 0
while not os.path.exists(stop):
    try:  # as soon as root's new folder is there: move it away and put a symlink in its place
        os.rename(work, moved)
        os.symlink(victim, work)
        os.rename(moved, moved + str(swaps))
        swaps += 1
    except OSError:
        pass
print(swaps)
"""


class Attack:
    """Another user, owner of `parent`, swapping `parent/work` for a symlink to `victim` in a
    loop, until stopped; `swaps` says how often it got one in."""

    def __init__(self, parent: Path, victim: Path, uid: int):
        self.stop = parent.parent / "stop"
        self.proc = subprocess.Popen(
            ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable,
             "-c", SWAPPER, str(parent / "work"), str(victim), str(self.stop)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(0.3)  # the interpreter is up and looping

    def end(self) -> int:
        """Stop the loop (killed if it does not stop); how often it got a symlink in."""
        self.stop.touch()
        try:
            out, _ = self.proc.communicate(timeout=30)
        finally:
            self.proc.kill()
            self.stop.unlink()
        return int(out)


def clear(parent: Path) -> None:
    """Remove what the last round left (the attacker may move it on meanwhile)."""
    for leftover in parent.iterdir():
        with contextlib.suppress(OSError):
            if leftover.is_symlink() or not leftover.is_dir():
                leftover.unlink()
            else:
                os.rmdir(leftover)


@pytest.fixture
def reachable():
    """A folder other users can reach (pytest's tmp_path is root's alone), removed after."""
    folder = Path(tempfile.mkdtemp(prefix="dllab-race-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


@ROOT_ONLY
def test_nothing_outside_the_new_folder_changes_owner_while_a_symlink_is_swapped_in(reachable):
    """The attack is real: against the old way (`mkdir`, then a `chown` that follows symlinks, two
    processes) it gives the root-owned victim away. Against private.make_folder, run 600 times
    under the same attack, the victim never changes owner, and each folder made is the
    learner's, 0700."""
    attacker, learner = accounts.free_id(range(130000, 131000)), accounts.free_id(range(131000, 132000))  # fmt: skip
    parent, victim = reachable / "shared", reachable / "victim"
    parent.mkdir()
    victim.mkdir(mode=0o755)
    os.chown(parent, attacker, attacker)

    attack = Attack(parent, victim, attacker)
    for _ in range(200):  # the old way, as `sudo invoke lab` did it
        subprocess.run(["mkdir", "-p", "--", str(parent / "work")], capture_output=True)
        subprocess.run(["chown", f"{learner}:{learner}", "--", str(parent / "work")], capture_output=True)  # fmt: skip
        clear(parent)
        if victim.stat().st_uid == learner:
            break
    attack.end()
    assert victim.stat().st_uid == learner, "the attack never won against the old way"
    os.chown(victim, 0, 0)
    clear(parent)

    attack, made = Attack(parent, victim, attacker), 0
    try:
        for _ in range(600):
            work = parent / "work"
            try:
                private.make_folder(work, learner, learner)
                made += 1
                with contextlib.suppress(FileNotFoundError):  # the attacker moved it on already
                    st = work.lstat()
                    if not work.is_symlink():
                        assert (st.st_uid, st.st_mode & 0o777) == (learner, 0o700)
            except UserError:
                pass
            clear(parent)
    finally:
        swaps = attack.end()
    assert (victim.stat().st_uid, victim.stat().st_mode & 0o777) == (0, 0o755)
    assert made > 0 and swaps > 0, (made, swaps)  # both sides really ran
