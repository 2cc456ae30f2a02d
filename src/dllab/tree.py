"""A folder's tree manifest and hash: its sorted paths, modes, symlink targets and file contents.

Standard library only: the image build runs this file with the system Python (`python3 -I -B
tree.py /opt/venv`, then `tree.py --hash MANIFEST`), and `invoke verify` runs the checkout's copy
inside the image the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from collections.abc import Iterator

HEADER = "# dllab tree manifest 1: mode, sha256 of a file's bytes or - , path, -> symlink target"


def _entries(root: str, relative: str = "") -> Iterator[str]:
    """One line per entry under `root`, in sorted path order, depth first."""
    with os.scandir(os.path.join(root, relative) if relative else root) as listing:
        names = sorted(entry.name for entry in listing)
    for name in names:
        path = f"{relative}/{name}" if relative else name
        full = os.path.join(root, path)
        info = os.lstat(full)
        mode = f"{info.st_mode:o}"
        # JSON quoting: any name (spaces, newlines, undecodable bytes) stays on one line.
        quoted = json.dumps(path)
        if stat.S_ISLNK(info.st_mode):
            yield f"{mode} - {quoted} -> {json.dumps(os.readlink(full))}"
        elif stat.S_ISREG(info.st_mode):
            yield f"{mode} {_file_sha256(full)} {quoted}"
        elif stat.S_ISDIR(info.st_mode):
            yield f"{mode} - {quoted}"
            yield from _entries(root, path)
        else:  # a device, FIFO or socket: its mode says which
            yield f"{mode} - {quoted}"


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def manifest(root: str) -> str:
    """The manifest of the tree at `root`: a header line, then one line per entry."""
    return "\n".join([HEADER, *_entries(root)]) + "\n"


def tree_hash(text: str) -> str:
    """The tree hash: the sha256 of its manifest's text."""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def path_of(line: str) -> str:
    """The path a manifest line is about."""
    _mode, _digest, rest = line.split(" ", 2)
    return json.JSONDecoder().raw_decode(rest)[0]


def first_difference(recorded: str, found: str) -> tuple[str, str] | None:
    """The first path, in manifest order, whose line differs between two manifests, and how:
    added, removed or changed (None if they agree)."""
    old = {path_of(line): line for line in recorded.splitlines()[1:]}
    new = {path_of(line): line for line in found.splitlines()[1:]}
    for path in sorted(old.keys() | new.keys(), key=lambda p: p.split("/")):
        if old.get(path) != new.get(path):
            return path, "added" if path not in old else "removed" if path not in new else "changed"
    return None


if __name__ == "__main__":  # python3 tree.py FOLDER | --hash MANIFEST
    if sys.argv[1] == "--hash":
        with open(sys.argv[2], encoding="utf-8") as recorded:
            print(tree_hash(recorded.read()))
    else:
        sys.stdout.write(manifest(sys.argv[1]))
