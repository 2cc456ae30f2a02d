"""A Jupyter server extension: the learner's server sends new progress events to a hub's
`progress` service, with the server's own hub token.

Kernels hold no hub token (docker/kernel.json removes it), so they only append to the learner's
log (dllab.progress.events); this extension, in the single-user server that does hold one, reads
what is new every half second and posts it. It remembers how far it got in
`.dllab/progress.forwarded` (0600) only after the service has answered: a failed post is sent
again (1, 2, 4, then every 5 s), and the service keeps each event once, by its id. Enabled for
every server (docker/jupyter_server_config.json); it does nothing outside a hub, where
$DLLAB_PROGRESS_URL (set by the hub) or $JUPYTERHUB_API_TOKEN is missing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.ioloop import PeriodicCallback

from dllab.progress import events

POLL = 0.5  # seconds between looks at the log
RETRY = (1.0, 2.0, 4.0, 5.0)  # seconds before posting again after a failure; then every 5 s
BATCH = 500  # events per post
STATE = "progress.forwarded"


class Forwarder:
    """Posts the log's new events (and whether the learner opted out) to the service."""

    def __init__(self, url: str, token: str, user: str, work: Path, log: logging.Logger):
        self.url = url.rstrip("/") + "/api/events"
        self.token, self.user, self.work, self.log = token, user, work, log
        self.state_path = work / events.FOLDER / STATE
        self.state = self._load()
        self.failures = 0
        self.next_try = 0.0

    def _load(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_path.read_text())
            return {"head": str(state["head"]), "offset": int(state["offset"]),
                    "opted_out": state["opted_out"]}  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError):
            return {"head": "", "offset": 0, "opted_out": None}

    def _save(self) -> None:
        self.state_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.state_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(self.state, out)

    def pending(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The next events to send and the state once they are sent; none if the learner opted out."""
        opted_out = events.opted_out(self.work)
        try:
            log = events.log_path(self.work).open("rb")
        except FileNotFoundError:
            return [], {"head": "", "offset": 0, "opted_out": opted_out}
        with log:
            # Which log this is: its first line (a log deleted and begun again has a new one).
            head = hashlib.sha256(log.readline()).hexdigest()[:16]
            size = log.seek(0, os.SEEK_END)
            offset = self.state["offset"]
            if head != self.state["head"] or size < offset:
                offset = 0  # a new or shortened log: from its start (the service drops what it has)
            if opted_out:  # what was logged before opting out stays on the learner's disk
                return [], {"head": head, "offset": size, "opted_out": True}
            log.seek(offset)
            lines = log.read().splitlines(keepends=True)
        batch = []
        for line in lines[:BATCH]:
            if not line.endswith(b"\n"):
                break  # a line a kernel is still writing: next time
            offset += len(line)
            event = events.parse(line)
            if event is None or event["user"] != self.user:
                self.log.warning("dllab progress: not sent, not an event of %s: %r", self.user, line[:200])  # fmt: skip
                continue
            batch.append(event)
        return batch, {"head": head, "offset": offset, "opted_out": False}

    async def post(self, batch: list[dict[str, Any]], opted_out: bool) -> None:
        await AsyncHTTPClient().fetch(
            self.url,
            method="POST",
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
            body=json.dumps({"opted_out": opted_out, "events": batch}),
            request_timeout=10,
        )

    async def tick(self) -> None:
        """Send what is new, until nothing is; after a failure, wait before the next try."""
        if time.monotonic() < self.next_try:
            return
        try:
            while True:
                batch, state = self.pending()
                if not batch and state == self.state and state["opted_out"] is not None:
                    break
                if batch or state["opted_out"] != self.state["opted_out"]:
                    await self.post(batch, state["opted_out"])
                self.state = state
                self._save()
        except (HTTPClientError, OSError) as exc:
            if not self.failures:
                self.log.warning("dllab progress: the service did not take events (%s): retrying", exc)  # fmt: skip
            self.next_try = time.monotonic() + RETRY[min(self.failures, len(RETRY) - 1)]
            self.failures += 1
            return
        if self.failures:
            self.log.info("dllab progress: the service takes events again")
        self.failures = 0


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "dllab.progress.forwarder"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    url, token = os.environ.get("DLLAB_PROGRESS_URL"), os.environ.get("JUPYTERHUB_API_TOKEN")
    user = os.environ.get("JUPYTERHUB_USER")
    if not (url and token and user):
        serverapp.log.debug("dllab progress: no hub progress service here; nothing to forward")
        return
    forwarder = Forwarder(url, token, user, events.work_dir(), serverapp.log)
    PeriodicCallback(forwarder.tick, POLL * 1000).start()
    serverapp.log.info("dllab progress: forwarding %s to %s", events.log_path(), url)
