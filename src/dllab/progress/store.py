"""Where the progress service keeps events: a SQLAlchemy database (SQLite in the hub's state folder,
0600; PostgreSQL for a cluster), one row per event, keyed by its id so a resent event is kept once."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from dllab.errors import UserError
from dllab.progress.events import NAME_LIMIT, event_id

metadata = MetaData()
# "learner", not "user": that word is reserved in PostgreSQL.
EVENTS = Table(
    "events",
    metadata,
    Column("id", String(32), primary_key=True),  # events.event_id: a digest of the six fields
    Column("learner", String(NAME_LIMIT), nullable=False, index=True),
    Column("lab", String(NAME_LIMIT), nullable=False),
    Column("exercise", String(NAME_LIMIT), nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("time", String(40), nullable=False),
)
LEARNERS = Table(
    "learners",
    metadata,
    Column("learner", String(NAME_LIMIT), primary_key=True),
    Column("opted_out", Boolean, nullable=False, default=False),
    Column("seen", String(40)),  # when their server last reported
    Column("refused", Integer, nullable=False, default=0),  # their posts that named someone else
)
INSERTS: dict[str, Any] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}  # ON CONFLICT


class Store:
    """The events and the learners' status, in the database at `url`."""

    def __init__(self, url: str):
        parsed = make_url(url)
        if parsed.get_backend_name() not in INSERTS:
            raise UserError(f"progress database {parsed.get_backend_name()} is not supported: use sqlite or postgresql")  # fmt: skip
        if parsed.get_backend_name() == "sqlite" and parsed.database:
            # Made private before SQLite opens it (its journal files take the same mode).
            os.close(os.open(parsed.database, os.O_RDWR | os.O_CREAT, 0o600))
            os.chmod(parsed.database, 0o600)
        self.engine = create_engine(url)
        self.insert = INSERTS[parsed.get_backend_name()]
        metadata.create_all(self.engine)

    def _seen(self, learner: str, **values: Any) -> Any:
        """An upsert of the learner's row: seen now, and `values`."""
        row = {
            "learner": learner,
            "seen": datetime.now(UTC).isoformat(timespec="seconds"),
            **values,
        }
        return (
            self.insert(LEARNERS)
            .values(row)
            .on_conflict_do_update(
                index_elements=["learner"], set_={k: v for k, v in row.items() if k != "learner"}
            )
        )

    def add(self, learner: str, batch: list[dict[str, Any]], opted_out: bool) -> int:
        """Keep `batch` (already checked to be `learner`'s) once each; opting out deletes what
        the learner shared. The number of events that were new."""
        with self.engine.begin() as db:
            db.execute(self._seen(learner, opted_out=opted_out))
            if opted_out:
                db.execute(delete(EVENTS).where(EVENTS.c.learner == learner))
                return 0
            if not batch:
                return 0
            rows = [
                {
                    "id": event_id(e),
                    "learner": e["user"],
                    **{k: e[k] for k in ("lab", "exercise", "passed", "attempt", "time")},
                }  # fmt: skip
                for e in batch
            ]
            result = db.execute(self.insert(EVENTS).values(rows).on_conflict_do_nothing())
            return max(result.rowcount, 0)

    def refuse(self, learner: str) -> None:
        """Count one post of `learner`'s that named another user."""
        with self.engine.begin() as db:
            db.execute(
                self.insert(LEARNERS)
                .values(learner=learner, refused=1)
                .on_conflict_do_update(
                    index_elements=["learner"], set_={"refused": LEARNERS.c.refused + 1}
                )
            )

    def events(self, learner: str | None = None) -> list[dict[str, Any]]:
        """Every event (or `learner`'s), with the six fields of the learners' logs."""
        query = select(EVENTS).order_by(EVENTS.c.time, EVENTS.c.learner)
        if learner is not None:
            query = query.where(EVENTS.c.learner == learner)
        with self.engine.connect() as db:
            return [
                {"user": r.learner, "lab": r.lab, "exercise": r.exercise, "passed": r.passed,
                 "attempt": r.attempt, "time": r.time}
                for r in db.execute(query)
            ]  # fmt: skip

    def learners(self, learner: str | None = None) -> list[dict[str, Any]]:
        query = select(LEARNERS)
        if learner is not None:
            query = query.where(LEARNERS.c.learner == learner)
        with self.engine.connect() as db:
            return [
                {"user": r.learner, "opted_out": r.opted_out, "seen": r.seen, "refused": r.refused}
                for r in db.execute(query)
            ]
