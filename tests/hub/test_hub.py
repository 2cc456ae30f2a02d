"""`python -m dllab.hub` for real: two learners spawned through the REST API, each training with
TensorFlow and PyTorch in a kernel, kept apart, limited, and their work kept across restarts."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import requests

from dllab import accounts
from tests.hub.client import TENSORFLOW_STEP, TORCH_STEP, KernelDied, form, hub_name, train

pytestmark = [pytest.mark.docker, pytest.mark.slow]

USERS = ("alice", "bob")
HUB = hub_name()


def inspect(name: str) -> dict:
    out = subprocess.run(["docker", "inspect", name], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]


@pytest.fixture(scope="module")
def learners(hub):
    """alice and bob, each with a token and a running server."""
    tokens = {name: hub.create_user(name) for name in USERS}
    for name in USERS:
        hub.spawn(name)
    return tokens


def test_each_learner_trains_tensorflow_and_pytorch_in_a_kernel(hub, learners):
    """Both servers run a TensorFlow and a PyTorch training step whose loss falls, on the CPU."""
    for name, token in learners.items():
        server = hub.server(name, token)
        kernel = server.start_kernel()
        assert "CPU" in train(server, kernel, TENSORFLOW_STEP)["device"]
        assert train(server, kernel, TORCH_STEP)["device"] == "cpu"


def test_a_learners_token_is_refused_on_another_learners_server(hub, learners):
    """alice's token opens her server's API and gets 403 on bob's."""
    alice = hub.server("alice", learners["alice"])
    assert alice.get("/api/status").status_code == 200
    assert (
        hub.server("bob", learners["bob"]).get("/api/status", learners["alice"]).status_code == 403
    )


def test_the_container_is_healthy_behind_its_prefix_and_nothing_in_it_is_root(hub, learners):
    """The HEALTHCHECK passes under /user/<name>/; no process is root; caps dropped; limits set."""
    name = f"{HUB}-alice"
    deadline = time.monotonic() + 90
    while (health := inspect(name)["State"].get("Health", {}).get("Status")) != "healthy":
        assert time.monotonic() < deadline, f"{name} is {health}: {inspect(name)['State']}"
        time.sleep(1)
    top = subprocess.run(
        ["docker", "top", name, "-eo", "uid,pid,args"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[1:]
    assert top and all(line.split()[0] != "0" for line in top), "\n".join(top)
    attrs = inspect(name)
    host = attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
    assert host["Memory"] == 2 * 1024**3 and host["CpuQuota"] == host["CpuPeriod"]
    uid = attrs["Config"]["User"].split(":")[0]
    assert attrs["Config"]["User"] == f"{uid}:{uid}" and not accounts.is_account(int(uid))
    assert attrs["Config"]["Labels"]["dllab.learner"] == "alice"
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert mounts["/work"]["Type"] == "volume" and mounts["/work"]["Name"] == f"{HUB}-work-alice"


def test_a_kernel_past_the_memory_limit_dies_while_server_and_hub_answer(hub, learners):
    """3 GiB in a 2 GiB container: the kernel is killed; the server and the hub keep answering."""
    server = hub.server("bob", learners["bob"])
    kernel = server.start_kernel()
    with pytest.raises(KernelDied):
        server.execute(kernel, "x = b'x' * (3 * 2**30)", timeout=120)
    assert server.get("/api/status").status_code == 200
    assert hub.api("GET", "/").status_code == 200
    assert inspect(f"{HUB}-bob")["State"]["Running"]


def test_learners_sign_up_and_log_in_once_the_teacher_approves(hub):
    """The admin exists before anyone signs up (its password in a 0600 file); a learner signs up
    and logs in only once the admin approves them at /hub/authorize; approved, they are on the
    admin's list of users before their first login."""
    password = "dllab-course-2026!"
    teacher, carol = requests.Session(), requests.Session()
    signed = form(carol, f"{hub.url}/hub/signup", username="carol", signup_password=password,
                  signup_password_confirmation=password)  # fmt: skip
    assert signed.status_code == 200, signed.text[-500:]
    assert form(teacher, f"{hub.url}/hub/login", username="teacher", password=hub.admin_password).status_code == 302  # fmt: skip
    refused = form(carol, f"{hub.url}/hub/login", username="carol", password=password)
    assert refused.status_code == 200 and "has not been authorized" in refused.text
    assert hub.api("GET", "/users/carol").status_code == 404
    approved = teacher.get(f"{hub.url}/hub/authorize/carol", timeout=30, allow_redirects=False)
    assert approved.status_code == 302
    assert hub.api("GET", "/users/carol").status_code == 200  # listed before her first login
    assert form(carol, f"{hub.url}/hub/login", username="carol", password=password).status_code == 302  # fmt: skip
    assert carol.get(f"{hub.url}/hub/authorize/carol", timeout=30, allow_redirects=False).status_code == 403  # fmt: skip


def test_work_stays_in_each_learners_volume_across_server_and_hub_restarts(hub, learners):
    """A file each writes is in their own volume only, and survives a server and a hub restart."""
    for name, token in learners.items():
        hub.server(name, token).put_file(f"{name}.txt", f"{name}'s work")
    hub.stop_server("alice")
    hub.spawn("alice")
    assert hub.server("alice", learners["alice"]).read_file("alice.txt") == "alice's work"

    stopped = hub.cli("stop")
    assert stopped.returncode == 0, stopped.stderr
    for name in USERS:  # the containers are gone, the volumes stay
        assert subprocess.run(
            ["docker", "inspect", f"{HUB}-{name}"], capture_output=True
        ).returncode
        assert inspect(f"{HUB}-work-{name}")["Labels"]["dllab.learner"] == name
    started = hub.start("--admin", "teacher")
    assert started.returncode == 0, started.stderr
    for name, token in learners.items():  # tokens live in the hub's database: still valid
        hub.spawn(name)
        server = hub.server(name, token)
        other = "bob" if name == "alice" else "alice"
        assert server.read_file(f"{name}.txt") == f"{name}'s work"
        assert server.read_file(f"{other}.txt") is None


def test_stop_keeps_volumes_and_remove_volumes_wants_yes(hub, learners):
    """`remove-volumes` refuses while the hub runs, lists without --yes, deletes with it."""
    assert hub.cli("remove-volumes", "--yes").returncode == 2
    assert hub.cli("stop").returncode == 0
    listed = hub.cli("remove-volumes")
    assert listed.returncode == 2 and "pass --yes" in listed.stderr
    for name in USERS:
        assert f"would delete volume {HUB}-work-{name} ({name}'s /work)" in listed.stdout
    removed = hub.cli("remove-volumes", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert f"deleting volume {HUB}-work-alice" in removed.stdout
    assert subprocess.run(["docker", "volume", "inspect", f"{HUB}-work-alice"], capture_output=True).returncode  # fmt: skip
