"""UIDs of their own: IDs for containers that no account (user or group) of this host has.

A container run as a host account's UID is that account's to signal, trace and read
(`/proc/PID/environ`, files in a bind mount). UID 1000 is the first user of most Linux machines,
so dllab never borrows a fixed UID: plain root's lab and each hub learner get an ID that the
host's account database does not know, the same ID as their GID.
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
from collections.abc import Iterable
from pathlib import Path

from dllab.errors import UserError

# Above the ranges distributions hand out (useradd: 1000-60000; systemd's dynamic users end at
# 65519 and its container ranges start at 524288, each 65536 wide: see systemd's UIDS-GIDS.md).
ROOT_LAB = range(100000, 101000)  # `invoke lab` run by plain root (not through sudo)
HUB = range(101000, 524000)  # hub learners: each hub a block of HUB_BLOCK of its own
HUB_BLOCK = 1000


def is_account(uid: int) -> bool:
    """Whether this host has a user or a group with this ID."""
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return True
        except KeyError:
            pass
    return False


def free_id(ids: Iterable[int], taken: Iterable[int] = ()) -> int:
    """The first of `ids` that no host account has and `taken` does not hold."""
    used = set(taken)
    for uid in ids:
        if uid not in used and not is_account(uid):
            return uid
    raise UserError("no free user ID is left in dllab's range: remove unused learners first")


def hub_ids(hub: str) -> range:
    """The block of UIDs one hub hands out, chosen by its name, so two hubs on a host differ."""
    blocks = len(HUB) // HUB_BLOCK
    start = HUB.start + int(hashlib.sha256(hub.encode()).hexdigest(), 16) % blocks * HUB_BLOCK
    return range(start, start + HUB_BLOCK)


class Allocations:
    """Each learner's UID, allocated once and remembered in a private JSON file."""

    def __init__(self, path: Path, ids: range):
        self.path, self.ids = path, ids

    def load(self) -> dict[str, int]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}

    def uid(self, learner: str) -> int:
        """The learner's UID: the one remembered, else the next free one (then remembered)."""
        known = self.load()
        if learner not in known:
            known[learner] = free_id(self.ids, known.values())
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(known, out, indent=1, sort_keys=True)
        return known[learner]

    def check(self) -> None:
        """A UserError if an account created since now owns a learner's UID."""
        clashes = [f"{name} ({uid})" for name, uid in self.load().items() if is_account(uid)]
        if clashes:
            raise UserError(
                f"host accounts now use the UIDs of learners {', '.join(clashes)}: remove those "
                f"learners from {self.path} (their next server gets a new UID), then start again"
            )
