"""The class's progress from its events: a grid of learners by exercises, pass rates, who is stuck.

Pure functions of the stored events, so the service's JSON, its page and its CSV say the same.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dllab.progress.events import FIELDS


@dataclass(frozen=True)
class Stuck:
    """When a learner counts as stuck on an exercise: this many failed attempts and no pass, the
    first of them at least this long ago."""

    attempts: int = 3
    minutes: float = 10.0


def grid(
    log: list[dict[str, Any]], learners: list[dict[str, Any]], now: datetime, stuck: Stuck
) -> dict[str, Any]:
    """The class view: every exercise (in the order first tried, by lab), every learner's cells,
    each exercise's pass rate among learners who share, and who is stuck where."""
    order: dict[tuple[str, str], str] = {}
    cells: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for event in sorted(log, key=lambda e: e["time"]):
        key = (event["lab"], event["exercise"])
        order.setdefault(key, event["time"])
        cell = cells.setdefault(event["user"], {}).setdefault(
            key, {"lab": key[0], "exercise": key[1], "passed": False, "attempts": 0, "failed": 0}
        )
        cell["attempts"] += 1
        cell["last"] = event["time"]
        if event["passed"]:
            cell["passed"] = True
        elif not cell["passed"]:
            cell["failed"] += 1
            cell.setdefault("first_failure", event["time"])
    exercises = sorted(order, key=lambda key: (key[0], order[key]))
    status = {row["user"]: row for row in learners}
    rows: list[dict[str, Any]] = []
    for user in sorted(set(status) | set(cells)):
        row = status.get(user, {})
        mine = cells.get(user, {})
        for cell in mine.values():
            failed, since = cell.pop("failed"), cell.pop("first_failure", None)
            cell["stuck"] = bool(
                not cell["passed"]
                and failed >= stuck.attempts
                and since
                and (now - datetime.fromisoformat(since)).total_seconds() >= stuck.minutes * 60
            )
        rows.append(
            {
                "user": user,
                "opted_out": bool(row.get("opted_out")),
                "seen": row.get("seen"),
                "refused": int(row.get("refused") or 0),
                "cells": [mine[key] for key in exercises if key in mine],
                "stuck": [f"{c['lab']}: {c['exercise']}" for c in mine.values() if c["stuck"]],
            }
        )
    sharing = [r for r in rows if not r["opted_out"]]
    summary = []
    for lab, exercise in exercises:
        tried = [c for r in sharing for c in r["cells"] if (c["lab"], c["exercise"]) == (lab, exercise)]  # fmt: skip
        passed = sum(c["passed"] for c in tried)
        summary.append(
            {
                "lab": lab,
                "exercise": exercise,
                "passed": passed,
                "tried": len(tried),
                "pass_rate": round(passed / len(sharing), 3) if sharing else 0.0,
            }
        )
    return {
        "time": now.isoformat(timespec="seconds"),
        "stuck_after": {"attempts": stuck.attempts, "minutes": stuck.minutes},
        "events": len(log),
        "exercises": summary,
        "learners": rows,
    }


FORMULA = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet would run as a formula


def _cell(value: Any) -> Any:
    """A learner-chosen name as a spreadsheet shows it, never as a formula it runs."""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA) else value


def to_csv(log: list[dict[str, Any]]) -> str:
    """Every event, one row each, oldest first: the six fields the learners' logs hold."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for event in sorted(log, key=lambda e: (e["time"], e["user"])):
        writer.writerow({key: _cell(value) for key, value in event.items()})
    return out.getvalue()
