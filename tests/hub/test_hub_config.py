"""deploy/jupyterhub/jupyterhub_config.py, loaded by the hub's own Python against a fake engine:
what a learner's container gets, and how GPUs are handed out for the cuda variant."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from dllab import accounts, containers, hub

# Run in the hub's venv (JupyterHub, DockerSpawner): load the config as JupyterHub does, with a
# fake Docker SDK client, then call the pre-spawn hook for learners while others hold GPUs.
SCRIPT = r"""
import json, os, sys, types
import docker
from traitlets.config import Config

class Container:
    def __init__(self, learner, gpu): self.labels = {"dllab.learner": learner, "dllab.gpu": gpu}

class Volumes:
    made = []
    def get(self, name): raise docker.errors.NotFound(name)
    def create(self, name, labels): Volumes.made.append([name, labels])

class Containers:
    running = [Container("ann", "0"), Container("ben", "0"), Container("cat", "1")]
    ran = []
    def list(self, filters): return list(Containers.running)
    def run(self, **kwargs): Containers.ran.append(kwargs)

class Client:
    volumes, containers = Volumes(), Containers()

docker.from_env = lambda: Client()
c = Config()
exec(compile(open(sys.argv[1]).read(), sys.argv[1], "exec"), {"c": c, "__name__": "config", "__file__": sys.argv[1]})

class Spawner:
    def __init__(self, name):
        self.user = types.SimpleNamespace(name=name)
        self.escaped_name = name
        self.extra_create_kwargs = {}

picked = {}
for name in ("dan", "eve"):
    spawner = Spawner(name)
    c.Spawner.pre_spawn_hook(spawner)
    picked[name] = spawner.extra_host_config.get("device_requests", [{}])[0].get("device_ids")
    Containers.running.append(Container(name, spawner.extra_create_kwargs["labels"].get("dllab.gpu")))
ds = c.DockerSpawner
print(json.dumps({
    "picked": picked, "volumes": Volumes.made, "host_config": {k: v for k, v in spawner.extra_host_config.items() if k != "device_requests"},
    "create": spawner.extra_create_kwargs, "owner_runs": Containers.ran,
    "cmd": ds.cmd, "mem": ds.mem_limit, "cpu": ds.cpu_limit,
    "bind_url": c.JupyterHub.bind_url, "hub_bind_url": c.JupyterHub.hub_bind_url,
    "authenticator": c.JupyterHub.authenticator_class, "admins": sorted(c.Authenticator.admin_users),
    "services": [s["name"] for s in c.JupyterHub.services],
}, default=str))
"""


@pytest.fixture
def loaded(tmp_path):
    def load(**env: str) -> dict:
        python = hub.Paths.default().venv / "bin" / "python"
        if not python.exists():
            pytest.skip(f"no hub environment at {python.parent.parent}: `python -m dllab.hub start` installs it")  # fmt: skip
        result = subprocess.run(
            [str(python), "-c", SCRIPT, str(hub.CONFIG)],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "DLLAB_HUB_IP": "172.31.0.1", "DLLAB_HUB_PORT": "8123",
                 "DLLAB_HUB_STATE": str(tmp_path), **env},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    return load


def test_a_learners_container_is_theirs_limited_and_labelled(loaded, tmp_path):
    """A learner runs as a UID of their own (remembered; no host account has it), hardened, with
    this hub's labels; their new volume is made with them and given to that UID."""
    config = loaded(DLLAB_HUB_ADMIN="teacher")
    assert config["cmd"] == ["jupyterhub-singleuser"]
    uid = json.loads((tmp_path / "uids.json").read_text())["eve"]
    assert (tmp_path / "uids.json").stat().st_mode & 0o777 == 0o600
    assert config["create"]["user"] == f"{uid}:{uid}" and uid in accounts.hub_ids(hub.name())
    assert not accounts.is_account(uid)
    labels = config["create"]["labels"]
    assert labels["dllab.learner"] == "eve" and labels["dllab.hub"] == hub.name()
    assert labels["dllab.owner"] == str(containers.Owner.current().uid)
    assert config["host_config"]["cap_drop"] == ["ALL"]
    assert config["host_config"]["security_opt"] == ["no-new-privileges"]
    assert config["host_config"]["shm_size"] == containers.SHM_SIZE
    assert config["mem"] == "2G" and config["cpu"] == 1.0
    assert config["bind_url"] == "http://127.0.0.1:8123"
    assert config["hub_bind_url"].startswith("http://172.31.0.1:")
    assert config["authenticator"] == "dllab.hubauth.ClassAuthenticator"
    assert config["admins"] == ["teacher"] and "idle-culler" in config["services"]
    # The learner's volume carries the labels `remove-volumes` finds it by, and is given to them.
    [made] = [v for v in config["volumes"] if v[0] == f"{hub.name()}-work-eve"]
    assert made[1]["dllab.learner"] == "eve" and made[1]["dllab.hub"] == hub.name()
    [given] = [r for r in config["owner_runs"] if "eve" in str(r["volumes"])]
    assert given["command"] == ["-d", "-o", str(uid), "-g", str(uid), "-m", "700", "/work"]
    assert given["cap_add"] == ["CHOWN", "FOWNER"] and given["network_mode"] == "none"


def test_no_gpu_is_requested_without_the_nvidia_runtime(loaded):
    assert loaded(DLLAB_HUB_GPU="0")["picked"] == {"dan": None, "eve": None}


def test_each_learner_gets_the_least_used_gpu(loaded):
    """GPU 0 serves two learners, GPU 1 one, GPU 2 none: dan gets 2, then eve 1 (a tie goes low)."""
    picked = loaded(DLLAB_HUB_VARIANT="cuda", DLLAB_HUB_GPU="1", DLLAB_HUB_GPUS="0,1,2")["picked"]
    assert picked == {"dan": ["2"], "eve": ["1"]}


def test_a_cap_on_learners_per_gpu_refuses_the_spawn(loaded, tmp_path):
    python = hub.Paths.default().venv / "bin" / "python"
    if not python.exists():
        pytest.skip("no hub environment")
    result = subprocess.run(
        [str(python), "-c", SCRIPT, str(hub.CONFIG)], capture_output=True, text=True, timeout=120,
        env={**os.environ, "DLLAB_HUB_IP": "172.31.0.1", "DLLAB_HUB_GPU": "1", "DLLAB_HUB_VARIANT": "cuda",
             "DLLAB_HUB_GPUS": "0,1", "DLLAB_HUB_GPU_USERS": "1", "DLLAB_HUB_STATE": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode != 0 and "every GPU already serves 1 learners" in result.stderr


def test_gpu_ids_come_from_the_setting_first(monkeypatch):
    monkeypatch.setenv("DLLAB_HUB_GPUS", "3,5")
    assert hub.gpu_ids() == "3,5"
    monkeypatch.delenv("DLLAB_HUB_GPUS")
    monkeypatch.setattr(hub.devices, "gpu_list", lambda: [])  # no nvidia-smi, or no GPU
    assert hub.gpu_ids() == "0"
