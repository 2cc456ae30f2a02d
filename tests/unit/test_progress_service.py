"""dllab.progress on the hub's side, without a hub: the class grid (stuck, pass rates, opted out),
the CSV, the database (each event once, 0600), the forwarder's reading of the log, and what
`configure` adds to a hub's config."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import stat
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from traitlets.config import Config

from dllab.errors import UserError
from dllab.progress import events, forwarder, service, view
from dllab.progress.store import Store
from dllab.variants import ROOT

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def event(user: str, exercise: str, passed: bool, attempt: int, minutes_ago: float, lab: str = "01_tensors_autodiff") -> dict:  # fmt: skip
    when = (NOW - timedelta(minutes=minutes_ago)).isoformat(timespec="milliseconds")
    return {"user": user, "lab": lab, "exercise": exercise, "passed": passed,
            "attempt": attempt, "time": when}  # fmt: skip


def cell(grid: dict, user: str, exercise: str) -> dict:
    [row] = [r for r in grid["learners"] if r["user"] == user]
    return next(c for c in row["cells"] if c["exercise"] == exercise)


def test_a_learner_is_stuck_after_both_thresholds_and_not_once_they_pass():
    """3 failures, the first 10+ minutes ago, no pass: stuck; 2 failures, a recent first one, or a
    pass: not stuck. Both thresholds are settings."""
    log = [
        *(event("alice", "grad", False, i + 1, 12 - i) for i in range(3)),  # stuck
        *(event("bob", "grad", False, i + 1, 12 - i) for i in range(2)),  # too few failures
        *(event("carol", "grad", False, i + 1, 5 - i) for i in range(3)),  # too recent
        *(event("dan", "grad", False, i + 1, 12 - i) for i in range(3)),
        event("dan", "grad", True, 4, 1),  # passed in the end
    ]
    grid = view.grid(log, [], NOW, view.Stuck(attempts=3, minutes=10))
    assert [u for u in ("alice", "bob", "carol", "dan") if cell(grid, u, "grad")["stuck"]] == [
        "alice"
    ]
    assert [r["stuck"] for r in grid["learners"]][0] == ["01_tensors_autodiff: grad"]
    looser = view.grid(log, [], NOW, view.Stuck(attempts=2, minutes=4))
    assert [u for u in ("alice", "bob", "carol", "dan") if cell(looser, u, "grad")["stuck"]] == ["alice", "bob", "carol"]  # fmt: skip


def test_the_grid_shows_passed_attempts_last_time_and_each_exercises_pass_rate():
    """Cells: passed if any attempt passed, attempts counted, the last one's time; pass rate over
    the learners who share (an opted-out learner shows as such, with no cells)."""
    log = [event("alice", "a", False, 1, 3), event("alice", "a", True, 2, 2),
           event("bob", "a", False, 1, 1), event("alice", "b", True, 1, 1)]  # fmt: skip
    learners = [{"user": "carol", "opted_out": True, "seen": None, "refused": 0},
                {"user": "bob", "opted_out": False, "seen": None, "refused": 2}]  # fmt: skip
    grid = view.grid(log, learners, NOW, view.Stuck())
    assert cell(grid, "alice", "a") == {
        "lab": "01_tensors_autodiff", "exercise": "a", "passed": True, "attempts": 2,
        "last": log[1]["time"], "stuck": False,
    }  # fmt: skip
    assert [(e["exercise"], e["passed"], e["tried"], e["pass_rate"]) for e in grid["exercises"]] == [
        ("a", 1, 2, 0.5), ("b", 1, 1, 0.5)
    ]  # fmt: skip
    rows = {r["user"]: r for r in grid["learners"]}
    assert rows["carol"]["opted_out"] and rows["carol"]["cells"] == []
    assert rows["bob"]["refused"] == 2 and grid["events"] == 4


def test_the_csv_has_one_row_per_event_and_runs_no_formula():
    """Header and the six fields per event, oldest first; a name starting with = is quoted."""
    log = [event("bob", "=HYPERLINK(1)", False, 1, 1), event("alice", "a", True, 1, 2)]
    rows = list(csv.DictReader(io.StringIO(view.to_csv(log))))
    assert [r["user"] for r in rows] == ["alice", "bob"]
    assert set(rows[0]) == {"user", "lab", "exercise", "passed", "attempt", "time"}
    assert rows[1]["exercise"] == "'=HYPERLINK(1)"


def test_the_database_keeps_each_event_once_and_opting_out_deletes_a_learners_events(tmp_path):
    """A resent batch adds nothing; refusals are counted; opting out deletes what was shared; the
    SQLite file is 0600."""
    store = Store(f"sqlite:///{tmp_path / 'progress.sqlite'}")
    batch = [event("alice", "a", False, 1, 2), event("alice", "a", True, 2, 1)]
    assert store.add("alice", batch, opted_out=False) == 2
    assert store.add("alice", batch, opted_out=False) == 0
    assert store.events() == sorted(batch, key=lambda e: e["time"])
    store.refuse("alice")
    store.refuse("alice")
    assert store.learners("alice")[0]["refused"] == 2
    store.add("alice", [], opted_out=True)
    assert store.events() == [] and store.learners("alice")[0]["opted_out"] is True
    assert stat.S_IMODE((tmp_path / "progress.sqlite").stat().st_mode) == 0o600


def test_a_database_other_than_sqlite_or_postgresql_is_refused_in_one_line():
    """mysql://... says which databases work."""
    with pytest.raises(UserError, match="use sqlite or postgresql"):
        Store("mysql://localhost/progress")


@pytest.fixture
def log_of(tmp_path):
    """A forwarder for alice over a work folder of the test's own."""
    return forwarder.Forwarder("http://127.0.0.1:9/services/progress/", "t", "alice", tmp_path, logging.getLogger("test"))  # fmt: skip


def append(work, *lines: str) -> None:
    path = events.log_path(work)
    path.parent.mkdir(exist_ok=True)
    with path.open("a") as out:
        out.write("".join(lines))


def test_the_forwarder_sends_complete_lines_of_its_learner_only(log_of, tmp_path):
    """A half-written line waits; a line naming another user, or not an event, is never sent."""
    mine, bobs = event("alice", "a", True, 1, 1), event("bob", "a", True, 1, 1)
    append(tmp_path, json.dumps(mine) + "\n", json.dumps(bobs) + "\n", "junk\n", '{"user": "alice"')
    batch, state = log_of.pending()
    assert batch == [mine] and state["opted_out"] is False
    assert state["offset"] == events.log_path(tmp_path).stat().st_size - len('{"user": "alice"')


def test_the_forwarder_starts_again_on_a_new_log_and_sends_nothing_when_opted_out(log_of, tmp_path):
    """A log replaced or cut short is read from its start; opted out, nothing is sent at all."""
    first, again = event("alice", "a", True, 1, 2), event("alice", "a", True, 1, 1)
    append(tmp_path, json.dumps(first) + "\n", json.dumps(first) + "\n")
    log_of.state = log_of.pending()[1]
    events.log_path(tmp_path).unlink()
    append(tmp_path, json.dumps(again) + "\n", json.dumps(again) + "\n", json.dumps(again) + "\n")
    assert log_of.pending()[0] == [again] * 3
    events.opt_out_path(tmp_path).touch()
    batch, state = log_of.pending()
    assert batch == [] and state["opted_out"] is True
    assert state["offset"] == events.log_path(tmp_path).stat().st_size


def test_the_forwarder_keeps_its_place_until_the_service_answers_and_backs_off(log_of, tmp_path):
    """No service at the URL: nothing is marked sent, and the next try waits 1 s, then 2, then 4."""
    append(tmp_path, json.dumps(event("alice", "a", True, 1, 1)) + "\n")
    delays = []
    for _ in range(3):
        log_of.next_try = 0
        before = forwarder.time.monotonic()
        asyncio.run(log_of.tick())
        delays.append(round(log_of.next_try - before))
    assert delays == [1, 2, 4] and log_of.state["offset"] == 0
    assert not (tmp_path / ".dllab" / forwarder.STATE).exists()


def test_configure_adds_the_service_its_roles_the_teachers_group_and_the_servers_url():
    """The service with its own database URL; teachers (a group) get the class scope through a role;
    learners and their servers get access; a role the config already has keeps its own scopes."""
    c = Config()
    c.JupyterHub.services = [{"name": "idle-culler", "command": ["x"]}]
    c.JupyterHub.load_roles = [{"name": "user", "scopes": ["self", "read:users:name"]}]
    url = service.configure(c, "/srv/hub", "10.0.0.1", port=10101)
    assert url == "http://10.0.0.1:10101"
    [progress] = [s for s in c.JupyterHub.services if s["name"] == "progress"]
    assert progress["url"] == url and progress["oauth_no_confirm"] is True
    assert progress["environment"]["DLLAB_PROGRESS_DB_URL"] == "sqlite:////srv/hub/progress.sqlite"
    assert progress["command"][1:] == ["-m", "dllab.progress.service"]
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    access = "access:services!service=progress"
    assert roles["progress-teacher"]["groups"] == ["teachers"]
    assert set(roles["progress-teacher"]["scopes"]) == {access, service.CLASS_SCOPE}
    assert set(roles["user"]["scopes"]) == {"self", "read:users:name", access}
    assert set(roles["server"]["scopes"]) == {
        "users:activity!user",
        "access:servers!server",
        access,
    }
    assert (
        "teachers" in c.JupyterHub.load_groups and service.CLASS_SCOPE in c.JupyterHub.custom_scopes
    )
    assert c.Spawner.environment["DLLAB_PROGRESS_URL"] == f"{url}/services/progress/"


def test_the_cluster_values_declare_what_configure_gives_a_hub():
    """deploy/z2jh/values.yaml: the same service command and settings, roles, scopes and group as
    configure(), and the port learners' servers post to open on the hub's Service and policies."""
    values = yaml.safe_load((ROOT / "deploy" / "z2jh" / "values.yaml").read_text())
    c = Config()
    service.configure(c, "/srv/hub", "hub", port=10101)
    [made] = c.JupyterHub.services
    declared = values["hub"]["services"]["progress"]
    assert declared["url"] == made["url"] and declared["command"][1:] == made["command"][1:]
    for key in ("oauth_no_confirm", "oauth_client_allowed_scopes"):
        assert declared[key] == made[key]
    assert {k for k in made["environment"] if k != "PYTHONPATH"} <= set(declared["environment"])
    roles = values["hub"]["loadRoles"]
    for role in c.JupyterHub.load_roles:
        assert set(roles[role["name"]]["scopes"]) == set(role["scopes"]), role["name"]
        assert roles[role["name"]].get("groups", []) == role.get("groups", [])
    config = values["hub"]["config"]["JupyterHub"]
    assert set(config["custom_scopes"]) == set(c.JupyterHub.custom_scopes)
    assert set(config["load_groups"]) == set(c.JupyterHub.load_groups)
    assert values["singleuser"]["extraEnv"]["DLLAB_PROGRESS_URL"] == c.Spawner.environment["DLLAB_PROGRESS_URL"]  # fmt: skip
    assert {"name": "progress", "port": 10101, "targetPort": 10101} in values["hub"]["service"]["extraPorts"]  # fmt: skip
    for policy in (values["hub"]["networkPolicy"]["ingress"], values["singleuser"]["networkPolicy"]["egress"], values["proxy"]["chp"]["networkPolicy"]["egress"]):  # fmt: skip
        assert any({"port": 10101} in rule["ports"] for rule in policy)
