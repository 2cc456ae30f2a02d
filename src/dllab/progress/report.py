"""Your own progress as a table (`invoke progress [--work DIR]`), and the opt-out switch.

`python -m dllab.progress [show] [--work DIR]` prints the table; `python -m dllab.progress off`
stops recording (the file `.dllab/opt-out` in the work folder), `on` starts it again.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from dllab.errors import Parser, UserError, report
from dllab.progress import events

COLUMNS = ("lab", "exercise", "result", "attempts", "last")


def summary(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per lab and exercise, in the order first tried: passed at least once, attempts,
    the last attempt's time."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for event in log:
        row = rows.setdefault(
            (event["lab"], event["exercise"]),
            {"lab": event["lab"], "exercise": event["exercise"], "passed": False, "attempts": 0},
        )
        row["passed"] = row["passed"] or event["passed"]
        row["attempts"] += 1
        row["last"] = max(row.get("last", event["time"]), event["time"])
    return sorted(rows.values(), key=lambda row: row["lab"])  # stable: exercises stay in order


def _local(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as aligned text columns, with a header and a count of passed exercises."""
    cells = [COLUMNS] + [
        (r["lab"], r["exercise"], "passed" if r["passed"] else "not yet", str(r["attempts"]),
         _local(r["last"]))
        for r in rows
    ]  # fmt: skip
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in cells
    ]
    passed = sum(r["passed"] for r in rows)
    return "\n".join([*lines, f"{passed} of {len(rows)} exercises passed"])


def show(work: Path) -> str:
    """What `invoke progress` prints for the work folder `work`."""
    if not work.is_dir():
        raise UserError(
            f"no work folder {work}: name the one your lab uses with --work (default: ./work)"
        )
    path = events.log_path(work)
    lines = []
    if events.opted_out(work):
        lines.append(
            f"recording is off ({events.opt_out_path(work)} exists): your checks record nothing "
            "new; turn it on with `python -m dllab.progress on`"
        )
    rows = summary(events.read(work))
    if not rows:
        lines.append(f"no checks recorded in {path} yet: run a lab's self-check cells")
        return "\n".join(lines)
    return "\n".join([*lines, f"your checks ({path}):", table(rows)])


def switch(work: Path, on: bool) -> str:
    """Turn recording on or off for the work folder `work`; what to tell the learner."""
    marker = events.opt_out_path(work)
    if on:
        marker.unlink(missing_ok=True)
        return "progress recording is on: each self-check adds one line to " + str(
            events.log_path(work)
        )
    marker.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    marker.touch(mode=0o600)
    return (
        "progress recording is off: your checks still print their verdicts but record nothing, "
        "and a hub's teacher sees you as opted out (`python -m dllab.progress on` undoes this)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m dllab.progress", description=__doc__)
    parser.add_argument("action", nargs="?", default="show", choices=("show", "off", "on"))
    parser.add_argument(
        "--work", help="your work folder (default: $DLLAB_WORK, else the checkout's work/)"
    )
    try:
        args = parser.parse_args(argv)
        work = Path(args.work) if args.work else events.work_dir()
        print(show(work) if args.action == "show" else switch(work, args.action == "on"))
        return 0
    except UserError as exc:
        return report(exc)
