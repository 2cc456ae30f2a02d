"""What a self-check records: one line per check in `<work>/.dllab/progress.jsonl` (0600).

Six fields and nothing else (no code, outputs, values or paths): `user`, `lab` (the notebook's or
script's file stem), `exercise` (the check's name), `passed`, `attempt` (1, 2, ... per user, lab
and exercise) and `time` (UTC, ISO 8601). The file `.dllab/opt-out` in the work folder turns
recording off: nothing is written, and on a hub the teacher sees the learner as opted out.
Stdlib only: kernels, the hub's service and the host's tasks all import it.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dllab.variants import ROOT

FIELDS = ("user", "lab", "exercise", "passed", "attempt", "time")
NAME_LIMIT = 200  # characters of a user, lab or exercise name; a longer one is not an event
FOLDER = ".dllab"
LOG = "progress.jsonl"
OPT_OUT = "opt-out"

_lab: str | None = None  # the lab `labs.exercises()` named, for kernels that know no file


def work_dir() -> Path:
    """The learner's work folder: $DLLAB_WORK (the image sets /work), else the checkout's work/."""
    return Path(os.environ.get("DLLAB_WORK") or ROOT / "work")


def log_path(work: Path | None = None) -> Path:
    return (work or work_dir()) / FOLDER / LOG


def opt_out_path(work: Path | None = None) -> Path:
    return (work or work_dir()) / FOLDER / OPT_OUT


def opted_out(work: Path | None = None) -> bool:
    return opt_out_path(work).exists()


def set_lab(name: str) -> None:
    """Name the running lab where no notebook file is known (a kernel without a Jupyter session)."""
    global _lab
    _lab = name


def current_lab() -> str:
    """The notebook's file stem (Jupyter tells its kernels), else the lab `labs.exercises()`
    named, else the script's stem."""
    session = os.environ.get("JPY_SESSION_NAME")
    if session:
        return Path(session).stem
    if _lab:
        return _lab
    script = sys.argv[0] if sys.argv else ""
    if script.endswith(".py") and "ipykernel" not in sys.modules:
        return Path(script).stem
    return "unknown"


def current_user() -> str:
    """The hub's name for the learner, else this machine's."""
    try:
        return os.environ.get("JUPYTERHUB_USER") or getpass.getuser()
    except (KeyError, OSError):  # a UID with no name and no $USER
        return "unknown"


def parse(line: str | bytes) -> dict[str, Any] | None:
    """The event in one log line, or None if it is not one (see `valid`)."""
    try:
        return valid(json.loads(line))
    except ValueError:
        return None


def valid(event: Any) -> dict[str, Any] | None:
    """`event` if it is exactly the six fields, well typed; else None."""
    if not isinstance(event, dict) or sorted(event) != sorted(FIELDS):
        return None
    names = (event["user"], event["lab"], event["exercise"])
    if not all(isinstance(n, str) and 0 < len(n) <= NAME_LIMIT for n in names):
        return None
    attempt = event["attempt"]
    if type(event["passed"]) is not bool or type(attempt) is not int or attempt < 1:
        return None
    try:
        when = datetime.fromisoformat(event["time"])
    except (TypeError, ValueError):
        return None
    return event if when.tzinfo is not None else None


def event_id(event: dict[str, Any]) -> str:
    """The event's id: a digest of its six fields, the same wherever and however often it is sent."""
    canonical = json.dumps({k: event[k] for k in FIELDS}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def read(work: Path | None = None) -> list[dict[str, Any]]:
    """Every valid event in the log (none if there is no log)."""
    try:
        lines = log_path(work).read_bytes().splitlines()
    except FileNotFoundError:
        return []
    return [event for event in map(parse, lines) if event]


def record(exercise: str, passed: bool, now: datetime | None = None) -> dict[str, Any] | None:
    """Append one check's event to the log; None (and nothing written) if the learner opted out."""
    work = work_dir()
    if opted_out(work):
        return None
    path = log_path(work)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    user, lab, exercise = (
        current_user()[:NAME_LIMIT],
        current_lab()[:NAME_LIMIT],
        exercise[:NAME_LIMIT],
    )
    opener = lambda name, flags: os.open(name, flags, 0o600)  # noqa: E731
    with open(path, "a+", encoding="utf-8", opener=opener) as log:
        os.fchmod(log.fileno(), 0o600)  # private, even if something else made it first
        fcntl.flock(log, fcntl.LOCK_EX)  # two kernels of one learner count attempts in turn
        log.seek(0)
        earlier = (parse(line) for line in log)
        attempt = 1 + sum(
            1
            for e in earlier
            if e and (e["user"], e["lab"], e["exercise"]) == (user, lab, exercise)
        )
        event = {
            "user": user,
            "lab": lab,
            "exercise": exercise,
            "passed": bool(passed),
            "attempt": attempt,
            "time": (now or datetime.now(UTC)).isoformat(timespec="milliseconds"),
        }
        log.write(json.dumps(event) + "\n")
    return event
