"""deploy/jupyterhub/jupyterhub_config.py, loaded by the hub's own Python against a fake engine:
what a learner's container gets, and how GPUs are handed out for the cuda variant."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from dllab import hub

# Run in the hub's venv (JupyterHub, DockerSpawner): load the config as JupyterHub does, with a
# fake Docker SDK client, then call the pre-spawn hook for learners while others hold GPUs.
SCRIPT = r"""
import json, os, sys, types
import docker
from traitlets.config import Config

class Container:
    def __init__(self, owner, gpu): self.labels = {"dllab.owner": owner, "dllab.gpu": gpu}

class Volumes:
    made = []
    def get(self, name): raise docker.errors.NotFound(name)
    def create(self, name, labels): Volumes.made.append([name, labels])

class Containers:
    running = [Container("ann", "0"), Container("ben", "0"), Container("cat", "1")]
    def list(self, filters): return list(Containers.running)

class Client:
    volumes, containers = Volumes(), Containers()

docker.from_env = lambda: Client()
c = Config()
exec(compile(open(sys.argv[1]).read(), sys.argv[1], "exec"), {"c": c, "__name__": "config", "__file__": sys.argv[1]})

class Spawner:
    def __init__(self, name):
        self.user = types.SimpleNamespace(name=name)
        self.escaped_name = name
        self.extra_create_kwargs = c.DockerSpawner.extra_create_kwargs

picked = {}
for name in ("dan", "eve"):
    spawner = Spawner(name)
    c.Spawner.pre_spawn_hook(spawner)
    picked[name] = spawner.extra_host_config.get("device_requests", [{}])[0].get("DeviceIDs")
    Containers.running.append(Container(name, spawner.extra_create_kwargs["labels"].get("dllab.gpu")))
ds = c.DockerSpawner
print(json.dumps({
    "picked": picked, "volumes": Volumes.made, "host_config": {k: v for k, v in spawner.extra_host_config.items() if k != "device_requests"},
    "create": ds.extra_create_kwargs, "cmd": ds.cmd, "mem": ds.mem_limit, "cpu": ds.cpu_limit,
    "bind_url": c.JupyterHub.bind_url, "hub_bind_url": c.JupyterHub.hub_bind_url,
    "authenticator": c.JupyterHub.authenticator_class, "admins": sorted(c.Authenticator.admin_users),
    "services": [s["name"] for s in c.JupyterHub.services],
}, default=str))
"""


@pytest.fixture(scope="module")
def loaded():
    def load(**env: str) -> dict:
        python = hub.Paths.default().venv / "bin" / "python"
        if not python.exists():
            pytest.skip(f"no hub environment at {python.parent.parent}: `python -m dllab.hub start` installs it")  # fmt: skip
        result = subprocess.run(
            [str(python), "-c", SCRIPT, str(hub.CONFIG)],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "DLLAB_HUB_IP": "172.31.0.1", "DLLAB_HUB_PORT": "8123", **env},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    return load


def test_a_learners_container_is_non_root_limited_and_labelled(loaded):
    config = loaded(DLLAB_HUB_ADMIN="teacher")
    assert config["cmd"] == ["jupyterhub-singleuser"]
    assert config["create"]["user"] == "1000:100"
    assert config["create"]["labels"]["dllab.owner"] == "{raw_username}"
    assert config["host_config"]["cap_drop"] == ["ALL"]
    assert config["host_config"]["security_opt"] == ["no-new-privileges"]
    assert config["mem"] == "2G" and config["cpu"] == 1.0
    assert config["bind_url"] == "http://127.0.0.1:8123"
    assert config["hub_bind_url"].startswith("http://172.31.0.1:")
    assert config["authenticator"] == "nativeauthenticator.NativeAuthenticator"
    assert config["admins"] == ["teacher"] and "idle-culler" in config["services"]
    # The learner's volume is made with the labels `remove-volumes` finds it by.
    assert ["dllab-hub-work-dan", {"dllab.hub": "dllab-hub", "dllab.owner": "dan"}] in config["volumes"]  # fmt: skip


def test_no_gpu_is_requested_without_the_nvidia_runtime(loaded):
    assert loaded(DLLAB_HUB_GPU="0")["picked"] == {"dan": None, "eve": None}


def test_each_learner_gets_the_least_used_gpu(loaded):
    """GPU 0 serves two learners, GPU 1 one, GPU 2 none: dan gets 2, then eve 1 (a tie goes low)."""
    picked = loaded(DLLAB_HUB_GPU="1", DLLAB_HUB_GPUS="0,1,2")["picked"]
    assert picked == {"dan": ["2"], "eve": ["1"]}


def test_a_cap_on_learners_per_gpu_refuses_the_spawn(loaded):
    python = hub.Paths.default().venv / "bin" / "python"
    if not python.exists():
        pytest.skip("no hub environment")
    result = subprocess.run(
        [str(python), "-c", SCRIPT, str(hub.CONFIG)], capture_output=True, text=True, timeout=120,
        env={**os.environ, "DLLAB_HUB_IP": "172.31.0.1", "DLLAB_HUB_GPU": "1",
             "DLLAB_HUB_GPUS": "0,1", "DLLAB_HUB_GPU_USERS": "1"},
    )  # fmt: skip
    assert result.returncode != 0 and "every GPU already serves 1 users" in result.stderr


def test_gpu_ids_come_from_the_setting_first(monkeypatch):
    monkeypatch.setenv("DLLAB_HUB_GPUS", "3,5")
    assert hub.gpu_ids() == "3,5"
    monkeypatch.delenv("DLLAB_HUB_GPUS")
    monkeypatch.setattr(hub.shutil, "which", lambda name: None)
    assert hub.gpu_ids() == "0"
