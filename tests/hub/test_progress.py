"""The class's progress on a real hub: learners' kernels run lab 01 through the Jupyter API, the
forwarder in their servers sends the checks' events, and the teacher's JSON, CSV and page (in a
real Chromium) show exactly those attempts; 403s; the service killed and restarted mid-lab; and
the latency from check() to the teacher's JSON with many learners at once."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import jupytext
import pytest
import requests

from dllab import containers, runner
from dllab.progress.events import FIELDS
from dllab.variants import ROOT
from tests.hub.client import Hub, Server, hub_name
from tests.support import missing

pytestmark = [pytest.mark.docker, pytest.mark.slow]

LEARNERS = ("alice", "bob", "carol")
LAB = "01_tensors_autodiff"
BROWSER = Path(__file__).parent / "browser"
# How many learners the latency test adds: 6 keep this module within 5 minutes of CI on a busy
# 2-core machine; BENCHMARKS.md ("The class's progress") measured 16 once.
LATENCY_LEARNERS = int(os.environ.get("DLLAB_PROGRESS_LEARNERS", "6"))
CHECKS = 20  # per learner in the latency test


@pytest.fixture(scope="module", autouse=True)
def stuck_soon():
    """A learner is stuck after 2 failed attempts, the first 3 s ago: thresholds a test reaches."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DLLAB_PROGRESS_STUCK_ATTEMPTS", "2")
        patch.setenv("DLLAB_PROGRESS_STUCK_MINUTES", "0.05")
        yield


def spawn_all(hub: Hub, names) -> None:
    """Start every named server at once, then wait for each."""
    for name in names:
        response = hub.api("POST", f"/users/{name}/server")
        assert response.status_code in (201, 202), response.text
    for name in names:
        hub.wait(name, ready=True, timeout=300)


@pytest.fixture(scope="module")
def room(hub):
    """Three learners with running servers, a teacher (group `teachers`) and an admin, by token."""
    tokens = {name: hub.create_user(name) for name in LEARNERS}
    tokens["tina"] = hub.create_user("tina")
    added = hub.api("POST", "/groups/teachers/users", json={"users": ["tina"]})
    assert added.status_code == 200, added.text
    assert hub.api("POST", "/users/ada", json={"admin": True}).status_code == 201
    tokens["ada"] = hub.create_user("ada")
    spawn_all(hub, LEARNERS)
    return tokens


def service(hub: Hub, path: str, token: str | None = None, **kwargs) -> requests.Response:
    """A request to the progress service through the hub's proxy (GET, or POST with json=)."""
    headers = {"Authorization": f"token {token}"} if token else {}
    method = "POST" if "json" in kwargs else "GET"
    return requests.request(
        method, f"{hub.url}/services/progress/{path}", headers=headers, timeout=30,
        allow_redirects=False, **kwargs,
    )  # fmt: skip


def wait_for(what: str, found, timeout: float = 15, every: float = 0.2):
    """`found()`'s first true value, polled; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := found():
            return value
        time.sleep(every)
    raise AssertionError(f"not within {timeout} s: {what}")


def progress(hub: Hub, token: str) -> dict:
    response = service(hub, "api/progress", token)
    assert response.status_code == 200, response.text
    return response.json()


def rows_of(hub: Hub, token: str, lab: str) -> list[dict]:
    """The teacher's CSV rows of one lab."""
    response = service(hub, "progress.csv", token)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/csv")
    return [row for row in csv.DictReader(io.StringIO(response.text)) if row["lab"] == lab]


def session(server: Server, path: str) -> str:
    """A kernel started as JupyterLab starts one for a notebook: through a session on `path`."""
    response = requests.post(
        f"{server.url}/api/sessions", headers={"Authorization": f"token {server.token}"},
        json={"path": path, "type": "notebook", "kernel": {"name": "python3"}}, timeout=60,
    )  # fmt: skip
    assert response.status_code == 201, response.text
    return response.json()["kernel"]["id"]


def learner_log(server: Server, kernel: str) -> list[dict]:
    """The learner's own event log, as their kernel reads it."""
    code = "import os\nlog = '/work/.dllab/progress.jsonl'\nprint(open(log).read() if os.path.exists(log) else '', end='')"  # fmt: skip
    out = server.execute(kernel, code)
    return [json.loads(line) for line in out.splitlines()]


def check_lines(events: list[dict]) -> str:
    """Kernel code running one check per event: passed or not, as each says."""
    return "from dllab import check\n" + "\n".join(
        f"check.equal({e['exercise']!r}, {e['passed']!r}, True)" for e in events
    )


def run_lab(server: Server, solutions: bool) -> str:
    """Every code cell of lab 01 in a kernel of the learner's, fast; its output."""
    kernel = session(server, f"labs/{LAB}.py")
    server.execute(kernel, f"import os\nos.environ.update(DLLAB_FAST='1', DLLAB_SOLUTIONS='{int(solutions)}')")  # fmt: skip
    cells = [c.source for c in jupytext.read(ROOT / "labs" / f"{LAB}.py").cells if c.cell_type == "code"]  # fmt: skip
    out = "".join(server.execute(kernel, code, timeout=600) for code in cells)
    # Shut down: its memory goes, and the next session on this path starts a new kernel.
    stopped = requests.delete(f"{server.url}/api/kernels/{kernel}", headers={"Authorization": f"token {server.token}"}, timeout=60)  # fmt: skip
    assert stopped.status_code == 204, stopped.text
    return out


def test_three_learners_run_a_lab_and_the_teacher_sees_exactly_their_attempts(hub, room):
    """Each runs lab 01 unsolved, then solved: the teacher's CSV holds exactly their logs' events,
    and the JSON each exercise passed on attempt 2 where attempt 1 said not yet."""

    def both_runs(name: str) -> tuple[str, list[dict]]:
        server = hub.server(name, room[name])
        out = run_lab(server, solutions=False) + run_lab(server, solutions=True)
        return out, learner_log(server, session(server, "labs/log.ipynb"))

    with ThreadPoolExecutor(len(LEARNERS)) as pool:
        runs = dict(zip(LEARNERS, pool.map(both_runs, LEARNERS), strict=True))
    logs = [e for _, log in runs.values() for e in log]
    for name, (out, log) in runs.items():
        verdicts = [line for line in out.splitlines() if line.startswith(("correct: ", "not yet: "))]  # fmt: skip
        assert len(verdicts) == len(log) and {e["user"] for e in log} == {name}
        assert all(set(e) == set(FIELDS) for e in log)
    rows = wait_for("every event in the CSV", lambda: len(got := rows_of(hub, room["tina"], LAB)) >= len(logs) and got)  # fmt: skip
    as_logged = sorted(json.dumps({k: str(e[k]) for k in FIELDS}, sort_keys=True) for e in logs)
    assert sorted(json.dumps(r, sort_keys=True) for r in rows) == as_logged
    data = progress(hub, room["tina"])
    unsolved = {e["exercise"] for e in logs if e["attempt"] == 1 and not e["passed"]}
    assert unsolved, "lab 01 as shipped has exercises that say not yet"
    for learner in (r for r in data["learners"] if r["user"] in LEARNERS):
        cells = {c["exercise"]: c for c in learner["cells"] if c["lab"] == LAB}
        assert {e["exercise"] for e in logs} == set(cells)
        assert [c for c in cells.values() if c["attempts"] != 2 or not c["passed"]] == []
    rates = {e["exercise"]: e["pass_rate"] for e in data["exercises"] if e["lab"] == LAB}
    assert set(rates.values()) == {1.0} and unsolved <= set(rates)


def test_kernels_hold_no_hub_token_while_their_server_does(hub, room):
    """The server's container has JUPYTERHUB_API_TOKEN; a kernel's environment has no token at all."""
    server = hub.server("alice", room["alice"])
    listed = (
        runner.Runner()
        .checked(
            containers.inspect_command(
                f"{hub_name()}-alice", "{{range .Config.Env}}{{println .}}{{end}}"
            )
        )
        .splitlines()
    )
    env = dict(line.split("=", 1) for line in listed if "=" in line)
    token = env["JUPYTERHUB_API_TOKEN"]
    seen = server.execute(session(server, "labs/env.ipynb"), "import os\nprint(sorted(os.environ.items()))")  # fmt: skip
    assert token and token not in seen and "JUPYTERHUB_API_TOKEN" not in seen


def test_learners_and_strangers_get_403_and_a_forged_event_is_refused_and_counted(hub, room):
    """A learner's token: 403 on the class JSON and CSV, 200 on their own rows (theirs only); no
    token: 403 (the page sends a browser to the hub's login); an event naming another learner:
    403, counted on the sender's row; teachers and admins see the class."""
    alice = room["alice"]
    assert service(hub, "api/progress", alice).status_code == 403
    assert service(hub, "progress.csv", alice).status_code == 403
    mine = service(hub, "api/mine", alice).json()
    assert [r["user"] for r in mine["learners"]] == ["alice"]
    for path in ("api/progress", "progress.csv", "api/mine"):
        assert service(hub, path).status_code == 403
    assert service(hub, "api/events", json={"opted_out": False, "events": []}).status_code == 403
    page = service(hub, "")
    assert page.status_code == 302 and "/hub/api/oauth2/authorize" in page.headers["Location"]
    forged = {"user": "bob", "lab": LAB, "exercise": "forged", "passed": True, "attempt": 1,
              "time": "2026-11-27T09:00:00.000+00:00"}  # fmt: skip
    refused = service(hub, "api/events", alice, json={"opted_out": False, "events": [forged]})
    assert refused.status_code == 403 and "must name you (alice), not bob" in refused.text
    for teacher in ("tina", "ada"):
        data = progress(hub, room[teacher])
        [row] = [r for r in data["learners"] if r["user"] == "alice"]
        assert row["refused"] == 1
        assert all(c["exercise"] != "forged" for r in data["learners"] for c in r["cells"])


def test_a_learner_who_fails_twice_is_stuck_until_they_pass(hub, room):
    """With the thresholds set to 2 attempts and 3 s, bob shows as stuck, and not once he passes
    (then stuck on the next exercise)."""
    server = hub.server("bob", room["bob"])
    kernel = session(server, "labs/stuck.ipynb")
    server.execute(kernel, check_lines([{"exercise": "hard one", "passed": False}] * 2))

    def bobs_cell(exercise: str):
        """bob's cell for `exercise` if he is stuck there."""
        [row] = [r for r in progress(hub, room["tina"])["learners"] if r["user"] == "bob"]
        return next((c for c in row["cells"] if c["exercise"] == exercise and c["stuck"]), None)

    assert wait_for("bob stuck", lambda: bobs_cell("hard one"))["attempts"] == 2
    server.execute(kernel, check_lines([{"exercise": "hard one", "passed": True}, *[{"exercise": "hard two", "passed": False}] * 2]))  # fmt: skip
    wait_for("bob stuck on the next one", lambda: bobs_cell("hard two"))
    assert not bobs_cell("hard one")


def test_a_learner_who_opts_out_shares_nothing_and_shows_as_opted_out(hub, room):
    """`python -m dllab.progress off` in carol's terminal: her rows go, she shows as opted out, and
    her next check prints its verdict but is neither logged nor sent."""
    server = hub.server("carol", room["carol"])
    kernel = session(server, "labs/private.ipynb")
    said = server.execute(kernel, "import subprocess, sys\nprint(subprocess.run([sys.executable, '-m', 'dllab.progress', 'off'], capture_output=True, text=True).stdout)")  # fmt: skip
    assert "progress recording is off" in said

    def carols_row():
        [row] = [r for r in progress(hub, room["tina"])["learners"] if r["user"] == "carol"]
        return row if row["opted_out"] else None

    assert wait_for("carol opted out", carols_row)["cells"] == []
    before = len(learner_log(server, kernel))
    assert "correct: private" in server.execute(kernel, check_lines([{"exercise": "private", "passed": True}]))  # fmt: skip
    assert len(learner_log(server, kernel)) == before
    assert all(r["user"] != "carol" for r in rows_of(hub, room["tina"], LAB))


def service_pid(hub: Hub) -> int | None:
    """The progress service's process (the hub's child running dllab.progress.service), if one runs."""
    hub_pid = (hub.state / "hub.pid").read_text().strip()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            parent = next(line.split()[1] for line in (proc / "status").read_text().splitlines() if line.startswith("PPid:"))  # fmt: skip
            if parent == hub_pid and b"dllab.progress.service" in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:  # a process that ended meanwhile
            continue
    return found[0] if len(found) == 1 else None


def test_checks_made_while_the_service_is_down_arrive_once_after_it_returns(hub, room):
    """The service is killed mid-lab: checks still print their verdicts; once the hub has started
    it again, every event arrives within 10 s, none lost and none twice."""
    server = hub.server("alice", room["alice"])
    kernel = session(server, "labs/restart.ipynb")
    before = [{"exercise": f"before {i}", "passed": i % 2 == 0} for i in range(3)]
    during = [{"exercise": f"during {i}", "passed": i % 2 == 1} for i in range(3)]
    server.execute(kernel, check_lines(before))
    wait_for("the first checks", lambda: len(rows_of(hub, room["tina"], "restart")) == 3)
    down = service_pid(hub)
    assert down
    os.kill(down, signal.SIGKILL)
    killed = time.monotonic()
    out = server.execute(kernel, check_lines(during))
    assert out.count("correct: during") == 1 and out.count("not yet: during") == 2
    wait_for(
        "the hub restarting the service", lambda: service_pid(hub) not in (None, down), timeout=60
    )
    wait_for("the service answering", lambda: service(hub, "api/mine", room["alice"]).status_code == 200, timeout=30)  # fmt: skip
    back = time.monotonic()
    rows = wait_for("the checks made while it was down", lambda: len(r := rows_of(hub, room["tina"], "restart")) == 6 and r, timeout=10)  # fmt: skip
    arrived = time.monotonic() - back
    print(json.dumps({"service_back_after_s": round(back - killed, 1), "events_after_return_s": round(arrived, 1)}))  # fmt: skip
    assert arrived <= 10
    logged = [e for e in learner_log(server, kernel) if e["lab"] == "restart"]
    assert sorted((r["exercise"], int(r["attempt"])) for r in rows) == sorted((e["exercise"], e["attempt"]) for e in logged)  # fmt: skip
    assert len(logged) == 6


@pytest.fixture(scope="module")
def playwright(tmp_path_factory):
    """playwright-core from npm at its package-lock's version, for Debian's chromium."""
    if not shutil.which("chromium"):
        missing("browser", "Debian's chromium is not installed (apt-get install chromium)")
    if not shutil.which("npm"):
        missing("browser", "no npm: playwright-core installs from npm")
    folder = tmp_path_factory.mktemp("browser")
    for name in ("package.json", "package-lock.json", "progress_page.js"):
        shutil.copy(BROWSER / name, folder / name)
    installed = subprocess.run(["npm", "ci", "--silent", "--no-audit", "--no-fund"], cwd=folder, capture_output=True, text=True)  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    return folder


def hub_cookies(hub: Hub, name: str) -> list[dict]:
    """The cookies of a browser logged in to the hub as its admin `name` (the password the hub
    generated into its state folder)."""
    browser = requests.Session()
    browser.get(f"{hub.url}/hub/login", timeout=30)
    fields = {"username": name, "password": hub.admin_password, "_xsrf": browser.cookies.get("_xsrf", "")}  # fmt: skip
    browser.post(f"{hub.url}/hub/login", data=fields, timeout=30, allow_redirects=False)
    assert browser.cookies.get("jupyterhub-hub-login"), "the admin could not log in"
    return [{"name": c.name, "value": c.value, "domain": "127.0.0.1", "path": c.path} for c in browser.cookies]  # fmt: skip


def test_the_teachers_page_updates_itself_in_a_real_browser(hub, room, playwright, tmp_path):
    """Chromium, logged in to the hub as its admin, opens the page (through the hub's OAuth): the
    grid shows, in colors; a new check appears in it with no reload; a screenshot is saved
    (DLLAB_PROGRESS_SCREENSHOT keeps it)."""
    shot = Path(os.environ.get("DLLAB_PROGRESS_SCREENSHOT") or tmp_path / "progress.png").resolve()
    browser = subprocess.Popen(
        ["node", "progress_page.js", f"{hub.url}/services/progress/", str(shot)],
        cwd=playwright, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "DLLAB_HUB_COOKIES": json.dumps(hub_cookies(hub, "teacher"))},
    )  # fmt: skip
    try:
        ready = json.loads(browser.stdout.readline())
        assert ready.get("ready"), ready
        server = hub.server("alice", room["alice"])
        server.execute(session(server, "labs/browser.ipynb"), check_lines([{"exercise": "seen live", "passed": False}]))  # fmt: skip
        browser.stdin.write("go\n")
        browser.stdin.flush()
        after = json.loads(browser.stdout.readline())
    finally:
        browser.kill()
    assert after.get("loads") == 1, after  # the grid changed, the page never reloaded
    assert after["tried"] == ready["tried"] + 1, after
    assert after["passed"] and after["notyet"] and after["stuck"] and after["optedout"] == 1
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checks_reach_the_teachers_json_within_seconds_with_many_learners(hub, room, tmp_path):
    """DLLAB_PROGRESS_LEARNERS learners (6 in CI) each run 20 checks at once in a real kernel: the
    teacher's JSON shows each within 5 s at the 95th percentile; the CSV has every logged row."""
    sharing = ["alice", "bob"]  # running already (carol opted out): the rest are new
    new = [f"p{i:02d}" for i in range(LATENCY_LEARNERS - len(sharing))]
    tokens = {**room, **{name: hub.create_user(name) for name in new}}
    began = time.monotonic()
    spawn_all(hub, new)
    spawned = time.monotonic() - began
    names = sharing + new
    servers = {name: hub.server(name, tokens[name]) for name in names}
    kernels = {name: session(servers[name], "labs/latency.ipynb") for name in names}
    for name in names:  # imported before the clock starts, as in a lab that imported it long ago
        servers[name].execute(kernels[name], "from dllab import check\nimport time")
    seen: dict[tuple[str, str], float] = {}
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            data = progress(hub, room["tina"])
            now = time.time()
            for row in data["learners"]:
                for c in row["cells"]:
                    if c["lab"] == "latency":
                        seen.setdefault((row["user"], c["exercise"]), now - datetime.fromisoformat(c["last"]).timestamp())  # fmt: skip
            time.sleep(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    code = (
        f"for i in range({CHECKS}):\n    check.equal(f'check {{i:02d}}', i, i)\n    time.sleep(0.5)"
    )
    with ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(lambda n: servers[n].execute(kernels[n], code), names))
    wait_for("every check in the teacher's JSON", lambda: len(seen) == len(names) * CHECKS, timeout=30)  # fmt: skip
    done.set()
    poller.join()
    latencies = sorted(seen.values())
    p50, p95 = statistics.median(latencies), latencies[int(0.95 * (len(latencies) - 1))]
    logged = sum(len([e for e in learner_log(servers[n], kernels[n]) if e["lab"] == "latency"]) for n in names)  # fmt: skip
    rows = rows_of(hub, room["tina"], "latency")
    status = Path(f"/proc/{service_pid(hub)}/status").read_text()
    memory = {k: int(v.split()[0]) // 1024 for k, v in (line.split(":", 1) for line in status.splitlines()) if k in ("VmRSS", "VmHWM")}  # fmt: skip
    figures = {
        "learners": len(names), "checks_each": CHECKS, "spawn_new_s": round(spawned, 1),
        "latency_s": {"p50": round(p50, 2), "p95": round(p95, 2), "max": round(latencies[-1], 2),
                      "min": round(latencies[0], 2)},
        "service_memory_mib": memory, "csv_rows": len(rows), "logged_events": logged,
    }  # fmt: skip
    out = ROOT / ".bench" / "progress.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures))
    assert len(rows) == logged == len(names) * CHECKS
    assert p95 <= 5.0, figures
