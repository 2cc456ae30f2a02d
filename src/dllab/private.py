"""Private files and folders: 0600 and 0700 from the start, never written through a symlink, and
given to their owner by descriptor, so that nobody who shares the host can read them or turn a
root-run task against a file of root's."""

from __future__ import annotations

import os
from pathlib import Path

from dllab.errors import UserError


def folder(path: Path) -> Path:
    """`path` and its missing parents made 0700; a looser mode on `path` is tightened."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def write(path: Path, text: str, uid: int | None = None, gid: int | None = None) -> Path:
    """Write `text` to `path`, mode 0600 (also where it existed looser), refusing a symlink;
    given to `uid`:`gid` when root writes it for someone else."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(fd, 0o600)
        if uid is not None and os.geteuid() == 0 and uid != 0:
            os.fchown(fd, uid, gid if gid is not None else uid)
        out.write(text)
    return path


def make_folder(path: Path, uid: int, gid: int) -> None:
    """Make the new folder `path` (0700) for `uid`:`gid`, race-free: made in its parent by
    descriptor, then, when root makes it for someone else, opened without following a symlink
    and given away by that descriptor. Whoever owns the parent and swaps the new folder for a
    symlink or a folder of their own in between gets a UserError, never a chown of their target."""
    try:
        parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise UserError(f"cannot open {str(path.parent)!r}: {exc.strerror}") from None
    try:
        os.mkdir(path.name, 0o700, dir_fd=parent)
        if os.geteuid() != 0 or uid == 0:
            return
        try:
            fd = os.open(path.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
        except OSError:
            fd = -1
        try:
            if fd < 0 or os.fstat(fd).st_uid != os.geteuid():
                raise UserError(
                    f"{str(path)!r} was replaced while it was being made: someone else can write "
                    f"{str(path.parent)!r}; choose a folder only you can write"
                )
            os.fchown(fd, uid, gid)
        finally:
            if fd >= 0:
                os.close(fd)
    except FileExistsError:
        raise UserError(f"{str(path)!r} appeared while it was being made: run this again") from None
    except PermissionError:
        raise UserError(
            f"you may not create folders in {str(path.parent)!r}: choose another place"
        ) from None
    finally:
        os.close(parent)
