"""A class's work is safe on a shared host, tried as an attacker who shares it would: nobody takes
the admin's name, the login pages answer the host alone, failed logins slow down instead of
locking a learner out, the hub's files are private, learners run as UIDs of their own that no
host account has and cannot reach each other, and a second checkout's hub shares nothing."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from dllab import accounts, containers, runner, variants
from dllab.variants import ROOT
from tests.hub.client import Hub, form, hub_env, hub_name

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PASSWORD = "a-learners-own-2026!"


def login(hub: Hub, name: str, password: str) -> int:
    return form(requests.Session(), f"{hub.url}/hub/login", username=name, password=password).status_code  # fmt: skip


def inspect(name: str) -> dict:
    return json.loads(runner.Runner().checked(["docker", "inspect", name]))[0]


@pytest.fixture(scope="module")
def learners(hub):
    """alice and bob, each with a token and a running server."""
    tokens = {name: hub.create_user(name) for name in ("alice", "bob")}
    for name in tokens:
        hub.spawn(name)
    return tokens


def test_the_admin_is_the_operators_and_sign_up_cannot_take_its_name(hub):
    """The admin's password is generated into a 0600 file, whose path (never the password) start
    prints; signing up as the admin is refused, and that password does not log in."""
    secret = hub.state / "admin-password"
    assert secret.stat().st_mode & 0o777 == 0o600 and len(hub.admin_password) >= 20
    assert str(secret) in hub.started.stdout
    for shown in (hub.started.stdout, hub.started.stderr, (hub.state / "hub.log").read_text()):
        assert hub.admin_password not in shown
    page = form(requests.Session(), f"{hub.url}/hub/signup", username="teacher",
                signup_password=PASSWORD, signup_password_confirmation=PASSWORD)  # fmt: skip
    assert page.status_code == 200 and "already in use" in page.text
    assert login(hub, "teacher", PASSWORD) == 200  # the sign-up did not change the password
    assert login(hub, "teacher", hub.admin_password) == 302


def test_a_new_admin_password_counts_from_the_next_login(hub):
    """`reset-admin-password` writes a new password (0600) to the same file; the old one stops
    working at once, the new one logs in, while the hub runs."""
    old = hub.admin_password
    reset = hub.cli("reset-admin-password")
    assert reset.returncode == 0 and old not in reset.stdout + reset.stderr
    assert hub.admin_password != old and (hub.state / "admin-password").stat().st_mode & 0o777 == 0o600  # fmt: skip
    assert login(hub, "teacher", old) == 200
    assert login(hub, "teacher", hub.admin_password) == 302


def api_address(hub: Hub) -> str:
    """Where the hub's API listens for the learners' containers (the hub network's gateway)."""
    found = re.findall(r"Hub API listening on (http://[\d.]+:\d+)/hub/", (hub.state / "hub.log").read_text())  # fmt: skip
    return found[-1]


def test_login_pages_answer_the_host_only_and_the_names_it_serves(hub, learners):
    """From a container on the default bridge the hub's API answers, but its sign-up and login
    pages refuse (403); through the proxy they answer, unless the Host is another name."""
    probe = (
        "import sys, urllib.request, urllib.error\n"
        "for path in sys.argv[2:]:\n"
        "    try: print(path, urllib.request.urlopen(sys.argv[1] + path, timeout=5).status)\n"
        "    except urllib.error.HTTPError as e: print(path, e.code)\n"
    )
    cmd = containers.run_command(
        variants.get("cpu"), ["-c", probe, api_address(hub), "/hub/api/", "/hub/signup", "/hub/login"],
        options=["--entrypoint", "/usr/bin/python3"],
    )  # fmt: skip
    answers = dict(line.split() for line in runner.Runner().checked(cmd).splitlines())
    assert answers == {"/hub/api/": "200", "/hub/signup": "403", "/hub/login": "403"}
    assert requests.get(f"{hub.url}/hub/signup", timeout=10).status_code == 200
    rebound = requests.get(f"{hub.url}/hub/login", headers={"Host": f"evil.example:{hub.port}"}, timeout=10)  # fmt: skip
    assert rebound.status_code == 403


def test_failed_logins_slow_down_for_that_name_and_never_lock_it_out(hub):
    """After three wrong passwords for carol, each next guess waits a growing delay (1 s, then
    2 s): even her right password is refused within it, no guess is tried then, another learner
    logs in meanwhile, and carol gets in once the delay has passed: never a lock-out."""
    for name in ("carol", "dave"):
        hub.api("POST", f"/users/{name}")
        form(requests.Session(), f"{hub.url}/hub/signup", username=name,
             signup_password=PASSWORD, signup_password_confirmation=PASSWORD)  # fmt: skip
    admin = requests.Session()
    assert form(admin, f"{hub.url}/hub/login", username="teacher", password=hub.admin_password).status_code == 302  # fmt: skip
    for name in ("carol", "dave"):
        admin.get(f"{hub.url}/hub/authorize/{name}", timeout=30, allow_redirects=False)
    guesses = 3  # free: no delay yet
    for delay in (1, 2):
        for _ in range(guesses):
            assert login(hub, "carol", "wrong password") == 200
        failed_at, guesses = time.monotonic(), 1
        assert login(hub, "carol", PASSWORD) == 200  # within the delay: refused, not tried
        assert login(hub, "dave", PASSWORD) == 302  # another name is not slowed down
        time.sleep(max(0.0, failed_at + delay + 0.2 - time.monotonic()))
    assert login(hub, "carol", PASSWORD) == 302
    log = (hub.state / "hub.log").read_text()
    assert "login of carol from 127.0.0.1 refused: wait 1 s" in log and "refused: wait 2 s" in log


def test_the_hubs_state_is_private(hub):
    """The state folder is 0700; the database, log, secrets and UID table are 0600."""
    assert hub.state.stat().st_mode & 0o777 == 0o700
    for name in ("jupyterhub.sqlite", "hub.log", "api_token", "admin-password",
                 "jupyterhub_cookie_secret", "hub.json"):  # fmt: skip
        assert (hub.state / name).stat().st_mode & 0o777 == 0o600, name


def host_pid(container: str) -> int:
    return inspect(container)["State"]["Pid"]


def as_uid(uid: int, code: str) -> str:
    """Run Python `code` on the host as `uid` (no groups): what that learner's UID can do here."""
    done = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable, "-c", code],
        capture_output=True, text=True, timeout=60, cwd="/",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(os.getuid() != 0, reason="acts as the learners' UIDs on the host: needs root")
def test_learners_run_as_uids_of_their_own_and_cannot_reach_each_other(hub, learners):
    """alice and bob run as two UIDs no host account has; alice's UID cannot signal bob's server,
    read its environment (where its hub token is) or read the files in bob's volume."""
    hub.server("bob", learners["bob"]).put_file("secret.txt", "bob's notes")
    name = hub_name()
    uids = {who: int(inspect(f"{name}-{who}")["Config"]["User"].split(":")[0]) for who in learners}
    assert uids["alice"] != uids["bob"] and not any(map(accounts.is_account, uids.values()))
    volume = json.loads(runner.Runner().checked(["docker", "volume", "inspect", f"{name}-work-bob"]))[0]  # fmt: skip
    notes = Path(volume["Mountpoint"]) / "secret.txt"
    assert notes.stat().st_uid == uids["bob"] and notes.stat().st_mode & 0o077 == 0
    probe = f"""
import os
tried = []
try:
    os.kill({host_pid(f"{name}-bob")}, 0); tried.append("signalled")
except PermissionError:
    tried.append("no signal")
for path in ("/proc/{host_pid(f"{name}-bob")}/environ", {str(notes)!r}):
    try:
        open(path, "rb").read(); tried.append("read " + path)
    except PermissionError:
        tried.append("no read")
print(",".join(tried))
"""
    assert as_uid(uids["alice"], probe) == "no signal,no read,no read"


@pytest.fixture(scope="module")
def other_checkout(tmp_path_factory):
    """A second checkout of this repository (its tracked files), as another clone on the host."""
    copy = tmp_path_factory.mktemp("clone") / "dllab"
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout  # fmt: skip
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    return copy


def test_two_checkouts_hubs_share_nothing(hub, learners, other_checkout, tmp_path):
    """A second checkout's hub with the same learner names gets its own containers, volumes,
    network and state (0700, a loose log tightened at start); its stop and remove-volumes leave
    the first hub's learners, network, volumes and API untouched."""
    mine, state = hub_name(), tmp_path / "state"
    state.mkdir(mode=0o755)
    (state / "hub.log").write_text("from an older dllab\n")
    (state / "hub.log").chmod(0o644)
    second = Hub(containers.any_free_port(), state, hub_env(state), root=other_checkout)
    started = second.start()
    try:
        assert started.returncode == 0, started.stderr + (state / "hub.log").read_text()[-2000:]
        assert state.stat().st_mode & 0o777 == 0o700 and (state / "hub.log").stat().st_mode & 0o777 == 0o600  # fmt: skip
        second.create_user("alice")
        second.spawn("alice")
        listed = runner.Runner().checked(["docker", "ps", "--format", "{{.Names}}"]).split()
        alice = [name for name in listed if name.endswith("-alice")]
        assert len(alice) == 2 and f"{mine}-alice" in alice
    finally:
        stopped = second.cli("stop")
        removed = second.cli("remove-volumes", "--yes")
    assert stopped.returncode == 0 and removed.returncode == 0, removed.stderr
    assert f"{mine}-work-alice" not in removed.stdout and "-work-alice" in removed.stdout
    assert inspect(f"{mine}-alice")["State"]["Running"]
    assert inspect(f"{mine}-work-alice") and inspect(f"{mine}-net")
    assert hub.api("GET", "/").status_code == 200
    assert hub.server("alice", learners["alice"]).get("/api/status").status_code == 200


def test_a_second_start_names_the_stop_command_that_works(hub):
    """Starting the hub again while it runs: one line naming `invoke hub --stop` (with the
    instance it runs as), not a module path."""
    again = hub.start()
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1
    assert again.stderr.strip().endswith(f"stop it with `DLLAB_INSTANCE={hub.env['DLLAB_INSTANCE']} invoke hub --stop`")  # fmt: skip
