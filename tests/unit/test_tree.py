"""The venv tree manifest: paths, modes, symlink targets and contents; never times."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dllab import tree


@pytest.fixture
def folder(tmp_path):
    """A small tree: a package with a module, an executable, a symlink and an empty folder."""
    root = tmp_path / "venv"
    (root / "lib" / "pkg").mkdir(parents=True)
    (root / "lib" / "pkg" / "mod.py").write_text("x = 1\n")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_text("#!/bin/sh\n")
    (root / "bin" / "tool").chmod(0o755)
    (root / "bin" / "python").symlink_to("/usr/bin/python3")
    (root / "empty").mkdir()
    return root


@pytest.mark.parametrize(
    ("change", "path", "how"),
    [
        (lambda r: (r / "lib/pkg/mod.py").write_text("x = 2\n"), "lib/pkg/mod.py", "changed"),
        (lambda r: (r / "bin/tool").chmod(0o644), "bin/tool", "changed"),
        (
            lambda r: ((r / "bin/python").unlink(), (r / "bin/python").symlink_to("/bin/sh")),
            "bin/python",
            "changed",
        ),  # fmt: skip
        (lambda r: (r / "lib/pkg/new.py").write_text(""), "lib/pkg/new.py", "added"),
        (lambda r: (r / "empty").rmdir(), "empty", "removed"),
    ],
    ids=["content", "mode", "symlink", "added", "removed"],
)
def test_any_change_changes_the_hash_and_names_its_path(folder, change, path, how):
    """A changed byte, mode or link target, an added or a removed entry: another hash, and the
    first difference names the path and how it differs."""
    before = tree.manifest(str(folder))
    change(folder)
    after = tree.manifest(str(folder))
    assert tree.tree_hash(after) != tree.tree_hash(before)
    assert tree.first_difference(before, after) == (path, how)


def test_times_and_listing_order_do_not_count(folder):
    """Touching every file leaves the manifest as it was: only what the issue lists counts."""
    before = tree.manifest(str(folder))
    for path in folder.rglob("*"):
        os.utime(path, (0, 0), follow_symlinks=False)
    assert tree.manifest(str(folder)) == before
    assert tree.first_difference(before, before) is None


def test_odd_file_names_stay_on_one_line(folder):
    """Spaces, newlines and undecodable bytes in a name are quoted: one line per entry."""
    (folder / "a name\nwith a newline").write_text("")
    os.close(os.open(os.fsencode(folder) + b"/latin-\xe9", os.O_CREAT | os.O_WRONLY, 0o644))
    text = tree.manifest(str(folder))
    assert len(text.splitlines()) == 1 + len(list(folder.rglob("*")))
    assert text.isascii()
    assert tree.path_of(text.splitlines()[1]) == "a name\nwith a newline"


def test_the_script_the_build_runs_prints_the_same_manifest_and_hash(folder, tmp_path):
    """`python3 -I -B tree.py FOLDER` and `--hash MANIFEST`, as the Dockerfile runs them."""
    script = tree.__file__
    printed = subprocess.run([sys.executable, "-I", "-B", script, str(folder)],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert printed == tree.manifest(str(folder))
    (tmp_path / "m.txt").write_text(printed)
    hashed = subprocess.run([sys.executable, "-I", "-B", script, "--hash", str(tmp_path / "m.txt")],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert hashed.strip() == tree.tree_hash(printed)
