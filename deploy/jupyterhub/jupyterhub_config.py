"""JupyterHub for a class on one host: DockerSpawner runs one dllab:<variant> container per user.

`python -m dllab.hub start` (or `invoke hub`) runs `jupyterhub -f` this file with the DLLAB_HUB_*
variables below set; each has a default, so a teacher can also run it directly. See
deploy/README.md for what each choice is and why.
"""

# ruff: noqa: F821  (`c` is JupyterHub's config object, injected when it loads this file)

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from dockerspawner import DockerSpawner
from jupyterhub.utils import url_path_join
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # dllab, from this checkout
from dllab.progress import service as progress  # noqa: E402

env = os.environ.get

VARIANT = env("DLLAB_HUB_VARIANT", "cpu")
IMAGE = env("DLLAB_HUB_IMAGE", f"dllab:{VARIANT}")
PORT = int(env("DLLAB_HUB_PORT", "8000"))
STATE = env("DLLAB_HUB_STATE", os.getcwd())
# Every engine object this hub makes is named `<prefix>-...` and labelled dllab.hub=<prefix>.
PREFIX = env("DLLAB_HUB_PREFIX", "dllab-hub")
NETWORK = env("DLLAB_HUB_NETWORK", f"{PREFIX}-net")
MEM_LIMIT = env("DLLAB_HUB_MEM_LIMIT", "2G")
CPU_LIMIT = float(env("DLLAB_HUB_CPU_LIMIT", "1"))
CULL_TIMEOUT = int(env("DLLAB_HUB_CULL_TIMEOUT", "3600"))  # seconds idle before a server stops
ADMIN = env("DLLAB_HUB_ADMIN", "admin")
AUTH = env("DLLAB_HUB_AUTH", "native")  # native | shared
GPU = env("DLLAB_HUB_GPU", "0") == "1"  # set by dllab.hub where the engine has the nvidia runtime
GPUS = [g for g in env("DLLAB_HUB_GPUS", "0").split(",") if g]  # GPU ids (or MIG UUIDs) to hand out
GPU_USERS = int(env("DLLAB_HUB_GPU_USERS", "0"))  # most users per GPU; 0: no cap
UID_GID = env("DLLAB_HUB_USER", "1000:100")  # the image's lab user, group `users` (as z2jh's fsGid)


def _gateway() -> str:
    """The host's address on the hub network: the hub binds its API there for the containers."""
    client = docker.from_env()
    try:
        network = client.networks.get(NETWORK)
    except docker.errors.NotFound:
        network = client.networks.create(
            NETWORK,
            driver="bridge",
            labels={"dllab.hub": PREFIX},
            options={
                "com.docker.network.bridge.enable_icc": "false"
            },  # learners can't reach each other
        )
    return network.attrs["IPAM"]["Config"][0]["Gateway"]


# --- the hub: the proxy on 127.0.0.1 only; the hub's API where the containers reach it ---------
c.JupyterHub.bind_url = f"http://127.0.0.1:{PORT}"
HUB_IP = env("DLLAB_HUB_IP") or _gateway()
c.JupyterHub.hub_bind_url = f"http://{HUB_IP}:{env('DLLAB_HUB_API_PORT', '8081')}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env('DLLAB_HUB_PROXY_API_PORT', '8001')}"
if env("DLLAB_HUB_PROXY"):
    c.ConfigurableHTTPProxy.command = [env("DLLAB_HUB_PROXY")]
c.JupyterHub.db_url = f"sqlite:///{os.path.join(STATE, 'jupyterhub.sqlite')}"
c.JupyterHub.cookie_secret_file = os.path.join(STATE, "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = os.path.join(STATE, "jupyterhub.pid")
# `stop` means every learner's server stops too (their volumes stay).
c.JupyterHub.cleanup_servers = True
c.JupyterHub.allow_named_servers = False

# --- who may log in -----------------------------------------------------------------------------
if AUTH == "shared":
    # A one-day workshop: one password for every learner, another for the admin (JupyterHub's own).
    c.JupyterHub.authenticator_class = "shared-password"
    c.SharedPasswordAuthenticator.user_password = env("DLLAB_HUB_USER_PASSWORD")
    c.SharedPasswordAuthenticator.admin_password = env("DLLAB_HUB_ADMIN_PASSWORD")
else:
    # A course: each learner signs up at /hub/signup with a password of their own; the admin
    # approves them at /hub/authorize. The admin named by --admin is approved on sign-up.
    c.JupyterHub.authenticator_class = "nativeauthenticator.NativeAuthenticator"
    c.NativeAuthenticator.minimum_password_length = 8
    c.NativeAuthenticator.check_common_password = True
    c.NativeAuthenticator.allowed_failed_logins = 5
    c.NativeAuthenticator.seconds_before_next_try = 60
    # Approval is NativeAuthenticator's gate: whoever it lets log in is allowed.
    c.Authenticator.allow_all = True
c.Authenticator.admin_users = {ADMIN}

# --- services: the idle culler, and dllab.hub's token (stop, tests, benchmarks) -----------------
c.JupyterHub.services = [
    {
        "name": "idle-culler",
        "command": [
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={CULL_TIMEOUT}",
            "--cull-every=60",
        ],
    }
]
c.JupyterHub.load_roles = [
    {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }
]
if env("DLLAB_HUB_API_TOKEN"):
    c.JupyterHub.services.append({"name": "dllab", "api_token": env("DLLAB_HUB_API_TOKEN")})
    c.JupyterHub.load_roles.append({"name": "admin", "services": ["dllab"]})

# --- one container per user ---------------------------------------------------------------------


class DllabSpawner(DockerSpawner):
    """DockerSpawner that returns once the server answers, polled every 0.1 s.

    The hub polls a started server with an exponential backoff (0.2 s, growing to 5 s, jittered),
    which adds a second or more to a spawn of 2-4 s; polled here, the hub's first check passes.
    """

    async def start(self):
        ip, port = await super().start()
        url = f"http://{ip}:{port}{url_path_join(self.server.base_url, 'api')}"
        client = AsyncHTTPClient()
        deadline = time.monotonic() + self.http_timeout
        while time.monotonic() < deadline:
            try:
                await client.fetch(url, request_timeout=1)
                break
            except HTTPClientError as error:
                if error.code < 500:  # answered, even 403 or 404: the server is up
                    break
            except OSError:
                pass
            if await self.poll() is not None:  # the container exited: the hub reports it
                break
            await asyncio.sleep(0.1)
        return ip, port


c.JupyterHub.spawner_class = DllabSpawner
c.DockerSpawner.image = IMAGE
# Always the single-user server, whatever the image's CMD (its entrypoint still copies the labs).
c.DockerSpawner.cmd = ["jupyterhub-singleuser"]
c.DockerSpawner.notebook_dir = "/work"
c.DockerSpawner.default_url = "/lab/tree/labs/README.md"
c.DockerSpawner.name_template = f"{PREFIX}-{{username}}"
c.DockerSpawner.network_name = NETWORK
c.DockerSpawner.use_internal_ip = True  # the proxy (on the host) reaches containers by IP
# A stopped server's container goes; the next start uses the newest image.
c.DockerSpawner.remove = True
c.DockerSpawner.pull_policy = "never"  # images are built here (`invoke build`), never pulled
# The user's work: a named volume per user, kept across server restarts, hub restarts and rebuilds.
c.DockerSpawner.volumes = {f"{PREFIX}-work-{{username}}": "/work"}
c.DockerSpawner.mem_limit = MEM_LIMIT
c.DockerSpawner.cpu_limit = CPU_LIMIT
# A 10 GB cuda image on a cold disk: give the first start time.
c.Spawner.start_timeout = 600
c.Spawner.http_timeout = 120
c.DockerSpawner.extra_create_kwargs = {
    "user": UID_GID,  # never root, not even for the entrypoint's UID remap (a named volume needs none)
    "labels": {
        "dllab.hub": PREFIX,
        "dllab.owner": "{raw_username}",
        "dllab.variant": VARIANT,
    },
}
HOST_CONFIG = {
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
    "pids_limit": 1024,
    "shm_size": "1g",  # PyTorch DataLoader workers share memory through /dev/shm
}


def _gpu_for(spawner) -> str:
    """The GPU a user's server gets: the one fewest running hub servers use now (ties: lowest)."""
    client = docker.from_env()
    load = dict.fromkeys(GPUS, 0)
    for container in client.containers.list(filters={"label": f"dllab.hub={PREFIX}"}):
        gpu = container.labels.get("dllab.gpu")
        if gpu in load and container.labels.get("dllab.owner") != spawner.user.name:
            load[gpu] += 1
    gpu = min(GPUS, key=lambda g: (load[g], GPUS.index(g)))
    if GPU_USERS and load[gpu] >= GPU_USERS:
        raise RuntimeError(f"every GPU already serves {GPU_USERS} users: try again later")
    return gpu


def pre_spawn_hook(spawner) -> None:
    """Label the user's volume (so `remove-volumes` finds it) and pick their GPU (cuda)."""
    client = docker.from_env()
    name = f"{PREFIX}-work-{spawner.escaped_name}"
    try:
        client.volumes.get(name)
    except docker.errors.NotFound:
        client.volumes.create(name, labels={"dllab.hub": PREFIX, "dllab.owner": spawner.user.name})
    host_config = dict(HOST_CONFIG)
    if GPU:
        gpu = _gpu_for(spawner)
        host_config["device_requests"] = [
            docker.types.DeviceRequest(device_ids=[gpu], capabilities=[["gpu"]])
        ]
        create = c.DockerSpawner.extra_create_kwargs
        spawner.extra_create_kwargs = {**create, "labels": {**create["labels"], "dllab.gpu": gpu}}
    spawner.extra_host_config = host_config


c.Spawner.pre_spawn_hook = pre_spawn_hook
c.DockerSpawner.extra_host_config = HOST_CONFIG

# --- the class's progress from the labs' self-checks, at /services/progress/ (last: it adds to
# the services, roles, groups and Spawner.environment set above) ---------------------------------
progress.configure(c, STATE, HUB_IP, int(env("DLLAB_HUB_PROGRESS_PORT", "10101")))
