"""The hub's `progress` service at /services/progress/: learners' check events in, the class's
progress out.

JupyterHub runs it (`configure` adds it to a hub's config) with its own API token, and logs
browsers in with hub OAuth. Who posts events is the token's owner, never the payload: a post with
an event naming someone else is refused (403) and counted. Admins, and the `teachers` group
through a role with the custom scope custom:progress:class, see the class: the page, the CSV at
progress.csv and the JSON at api/progress. Every other user sees only their own rows (the page,
api/mine) and gets 403 on the class views.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado.web import Application, HTTPError, RequestHandler, authenticated

from dllab.progress import events, view
from dllab.progress.store import Store

NAME = "progress"
ACCESS = f"access:services!service={NAME}"
CLASS_SCOPE = "custom:progress:class"
TEACHERS = "teachers"
PAGE = Path(__file__).with_name("page.html")
SRC = Path(__file__).resolve().parents[2]  # the checkout's src/, for the hub's Python
MAX_BODY = 2 * 2**20  # bytes of one post: far more than the forwarder's 500 events


# --- the hub's side: what jupyterhub_config.py calls --------------------------------------------


def _plain(section: Any, key: str, kind: type) -> Any:
    """`section[key]` as a plain list or dict, made empty where the config has not set it yet."""
    if not isinstance(section.get(key), kind):
        section[key] = kind()
    return section[key]


def _grant(roles: list[dict], name: str, scopes: list[str], base: dict | None = None, **members: list[str]) -> None:  # fmt: skip
    """Add `scopes` (and `members`) to the role `name`: the one `roles` already defines, else a
    new one (from `base`, for JupyterHub's default roles, so they keep their own scopes)."""
    role = next((r for r in roles if r["name"] == name), None)
    if role is None:
        role = dict(base or {"name": name})
        roles.append(role)
    role["scopes"] = sorted({*role.get("scopes", []), *scopes})
    for kind, names in members.items():
        role[kind] = sorted({*role.get(kind, []), *names})


def configure(c: Any, state: str | os.PathLike, ip: str, port: int) -> str:
    """Add the progress service to JupyterHub's config `c` (call it after the config's own
    services, roles, groups and Spawner.environment are set); its URL, where learners' servers
    post. `state` is the hub's state folder (the SQLite database goes there, unless
    $DLLAB_PROGRESS_DB_URL names another); `ip` and `port` where learners' containers reach it
    on the host; $DLLAB_PROGRESS_STUCK_ATTEMPTS and _MINUTES say when a learner is stuck (3, 10)."""
    from jupyterhub.roles import get_default_roles  # the hub's own: only the hub calls this

    env = os.environ.get
    url = f"http://{ip}:{port}"
    database = env("DLLAB_PROGRESS_DB_URL") or f"sqlite:///{Path(state).resolve() / 'progress.sqlite'}"  # fmt: skip
    _plain(c.JupyterHub, "services", list).append(
        {
            "name": NAME,
            "url": url,
            "command": [sys.executable, "-m", "dllab.progress.service"],
            "environment": {
                "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), env("PYTHONPATH")])),
                "DLLAB_PROGRESS_DB_URL": database,
                "DLLAB_PROGRESS_STUCK_ATTEMPTS": env("DLLAB_PROGRESS_STUCK_ATTEMPTS", "3"),
                "DLLAB_PROGRESS_STUCK_MINUTES": env("DLLAB_PROGRESS_STUCK_MINUTES", "10"),
            },
            "oauth_no_confirm": True,  # part of the hub, as its own pages are
            # A teacher's browser login carries the class scope (a learner's: only access).
            "oauth_client_allowed_scopes": [CLASS_SCOPE],
            "info": {"description": "the class's progress in the labs' self-checks"},
        }
    )
    _plain(c.JupyterHub, "custom_scopes", dict)[CLASS_SCOPE] = {
        "description": "See every learner's progress in the progress service."
    }
    _plain(c.JupyterHub, "load_groups", dict).setdefault(TEACHERS, {})
    roles = _plain(c.JupyterHub, "load_roles", list)
    defaults = {role["name"]: role for role in get_default_roles()}
    _grant(roles, "progress-teacher", [ACCESS, CLASS_SCOPE], groups=[TEACHERS])
    _grant(roles, "user", [ACCESS], defaults["user"])  # every learner: their own rows
    _grant(roles, "server", [ACCESS], defaults["server"])  # their server's token: their events
    _plain(c.Spawner, "environment", dict)["DLLAB_PROGRESS_URL"] = f"{url}/services/{NAME}/"
    return url


# --- the service --------------------------------------------------------------------------------


class _Handler(HubOAuthenticated, RequestHandler):
    def initialize(self, store: Store, stuck: view.Stuck) -> None:
        self.store, self.stuck = store, stuck

    def who(self) -> dict[str, Any]:
        """The hub user behind this request's token or login; 403 if there is none."""
        user = self.current_user
        if not user:
            raise HTTPError(403, reason="no hub login or token with access to this service")
        return user

    def teacher(self, user: dict[str, Any]) -> bool:
        return bool(user.get("admin")) or CLASS_SCOPE in user.get("scopes", [])

    def class_user(self) -> dict[str, Any]:
        user = self.who()
        if not self.teacher(user):
            raise HTTPError(403, reason="the class's progress is for teachers: your own is at api/mine")  # fmt: skip
        return user

    def grid(self, learner: str | None = None) -> dict[str, Any]:
        return view.grid(
            self.store.events(learner), self.store.learners(learner), datetime.now(UTC), self.stuck
        )

    def write_json(self, data: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(data))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.write_json({"status": status_code, "message": self._reason})


class PageHandler(_Handler):
    """The grid that updates itself: the class for teachers, a learner's own row for them."""

    @authenticated  # a browser without a hub login goes through the hub's OAuth
    def get(self) -> None:
        user = self.who()
        teacher = self.teacher(user)
        self.set_header("Cache-Control", "no-store")
        links = '<a href="progress.csv">CSV</a> · <a href="api/progress">JSON</a>'
        self.finish(
            Template(PAGE.read_text()).substitute(
                api="api/progress" if teacher else "api/mine",
                heading=html.escape(
                    "Class progress" if teacher else f"Your progress, {user['name']}"
                ),
                csv=links if teacher else "",
                xsrf=html.escape(self.xsrf_token.decode()),
            )
        )


class ClassHandler(_Handler):
    def get(self) -> None:
        self.class_user()
        self.write_json(self.grid())


class MineHandler(_Handler):
    def get(self) -> None:
        self.write_json(self.grid(self.who()["name"]))


class CsvHandler(_Handler):
    def get(self) -> None:
        self.class_user()
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", 'attachment; filename="progress.csv"')
        self.set_header("Cache-Control", "no-store")
        self.finish(view.to_csv(self.store.events()))


class EventsHandler(_Handler):
    """Where learners' servers post: {"opted_out": bool, "events": [event, ...]}."""

    def post(self) -> None:
        user = self.who()
        if user.get("kind", "user") != "user":
            raise HTTPError(403, reason="only a learner's server posts events")
        try:
            body = json.loads(self.request.body)
            batch = [events.valid(e) for e in body["events"]]
            opted_out = body["opted_out"]
        except (ValueError, KeyError, TypeError):
            raise HTTPError(400, reason='expected {"opted_out": bool, "events": [...]}') from None
        if not isinstance(opted_out, bool) or None in batch:
            raise HTTPError(400, reason=f"events have exactly these fields: {', '.join(events.FIELDS)}")  # fmt: skip
        others = sorted({e["user"] for e in batch if e} - {user["name"]})
        if others:
            self.store.refuse(user["name"])
            logging.getLogger(NAME).warning("refused events from %s naming %s", user["name"], others)  # fmt: skip
            raise HTTPError(403, reason=f"events must name you ({user['name']}), not {', '.join(others)}")  # fmt: skip
        new = self.store.add(user["name"], [e for e in batch if e], opted_out)
        self.write_json({"received": len(batch), "new": new})


def application(prefix: str, store: Store, stuck: view.Stuck) -> Application:
    options = {"store": store, "stuck": stuck}
    return Application(
        [
            (prefix, PageHandler, options),
            (prefix + "api/progress", ClassHandler, options),
            (prefix + "api/mine", MineHandler, options),
            (prefix + "api/events", EventsHandler, options),
            (prefix + "progress.csv", CsvHandler, options),
            (prefix + "oauth_callback", HubOAuthCallbackHandler),
        ],
        cookie_secret=os.urandom(32),  # OAuth state only: a restart means one more hub redirect
    )


async def serve() -> None:
    env = os.environ
    stuck = view.Stuck(
        int(env.get("DLLAB_PROGRESS_STUCK_ATTEMPTS", "3")),
        float(env.get("DLLAB_PROGRESS_STUCK_MINUTES", "10")),
    )
    app = application(env["JUPYTERHUB_SERVICE_PREFIX"], Store(env["DLLAB_PROGRESS_DB_URL"]), stuck)
    url = urlparse(env["JUPYTERHUB_SERVICE_URL"])
    # The URL's host, unless that is a name (a cluster's Service) and not this machine's address.
    ip = env.get("DLLAB_PROGRESS_BIND_IP") or url.hostname or ""
    app.listen(url.port or 80, ip, max_body_size=MAX_BODY)
    logging.getLogger(NAME).info("progress service at %s", env["JUPYTERHUB_SERVICE_URL"])
    await asyncio.Event().wait()


def main() -> None:
    os.umask(0o077)  # the database, and anything else it writes, is private
    logging.basicConfig(level=logging.INFO, format="[%(levelname).1s %(asctime)s %(name)s] %(message)s")  # fmt: skip
    logging.getLogger("tornado.access").setLevel(logging.WARNING)  # pages poll every 2 s
    asyncio.run(serve())


if __name__ == "__main__":
    main()
