"""JupyterHub for a class on one host: DockerSpawner runs one dllab:<variant> container per learner.

`python -m dllab.hub start` (or `invoke hub`) runs `jupyterhub --config` this file with the
DLLAB_HUB_* variables below set. The learners' containers get the same rules as every dllab
container (hardening, shared memory, GPUs, labels: dllab.containers), from the dllab package of
this checkout, which the config puts on the hub's path. See deploy/README.md for each choice.
"""

# ruff: noqa: E402, F821  (`c` is JupyterHub's config object, injected when it loads this file)

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # this checkout's dllab

from dockerspawner import DockerSpawner
from jupyterhub.utils import url_path_join
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

import docker
from dllab import accounts, containers, gpus, variants
from dllab import hub as dllab_hub
from dllab.progress import service as progress

env = os.environ.get

VARIANT = variants.get(env("DLLAB_HUB_VARIANT", "cpu"))
IMAGE = env("DLLAB_HUB_IMAGE") or VARIANT.image
PORT = int(env("DLLAB_HUB_PORT", "8000"))
STATE = Path(env("DLLAB_HUB_STATE") or os.getcwd())
NAME = env("DLLAB_HUB_NAME") or dllab_hub.name()  # names everything this hub makes
NETWORK = f"{NAME}-net"
MEM_LIMIT = env("DLLAB_HUB_MEM_LIMIT", "2G")
CPU_LIMIT = float(env("DLLAB_HUB_CPU_LIMIT", "1"))
CULL_TIMEOUT = int(env("DLLAB_HUB_CULL_TIMEOUT", "3600"))  # seconds idle before a server stops
ADMIN = env("DLLAB_HUB_ADMIN", dllab_hub.DEFAULT_ADMIN)
AUTH = env("DLLAB_HUB_AUTH", "native")  # native | shared
GPU = env("DLLAB_HUB_GPU", "0") == "1"  # set by dllab.hub where the engine has the nvidia runtime
GPUS = [g for g in env("DLLAB_HUB_GPUS", "0").split(",") if g]  # GPU ids (or MIG UUIDs) to hand out
GPU_USERS = int(env("DLLAB_HUB_GPU_USERS", "0"))  # most learners per GPU; 0: no cap
# Each learner runs as a UID of their own that no host account has, remembered in the state folder.
UIDS = accounts.Allocations(STATE / "uids.json", accounts.hub_ids(NAME))

# --- the hub: the proxy on 127.0.0.1 only; the hub's API where the containers reach it ---------
HUB_IP = env("DLLAB_HUB_IP", "127.0.0.1")  # the host's address on the learners' network
c.JupyterHub.bind_url = f"http://127.0.0.1:{PORT}"
c.JupyterHub.hub_bind_url = f"http://{HUB_IP}:{env('DLLAB_HUB_API_PORT', '8081')}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env('DLLAB_HUB_PROXY_API_PORT', '8001')}"
if env("DLLAB_HUB_PROXY"):
    c.ConfigurableHTTPProxy.command = [env("DLLAB_HUB_PROXY")]
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")
# `stop` means every learner's server stops too (their volumes stay).
c.JupyterHub.cleanup_servers = True
c.JupyterHub.allow_named_servers = False
# A TLS proxy in front (deploy/README.md) passes the client's address on: trust it, once.
c.JupyterHub.trusted_downstream_ips = [ip for ip in env("DLLAB_HUB_TRUSTED_PROXIES", "").split(",") if ip]  # fmt: skip

# --- who may log in -----------------------------------------------------------------------------
if AUTH == "shared":
    # A one-day workshop: one password for every learner, another for the admin (JupyterHub's own).
    c.JupyterHub.authenticator_class = "shared-password"
    c.SharedPasswordAuthenticator.user_password = env("DLLAB_HUB_USER_PASSWORD")
    c.SharedPasswordAuthenticator.admin_password = env("DLLAB_HUB_ADMIN_PASSWORD")
else:
    # A course: each learner signs up at /hub/signup with a password of their own; the admin
    # approves them at /hub/authorize. The admin's account is made by the operator (dllab.hubauth).
    c.JupyterHub.authenticator_class = "dllab.hubauth.ClassAuthenticator"
    c.ClassAuthenticator.admin_password_file = env("DLLAB_HUB_ADMIN_PASSWORD_FILE", "")
    c.ClassAuthenticator.minimum_password_length = 8
    c.ClassAuthenticator.check_common_password = True
    # The proxy reaches the hub from the host: on 127.0.0.1, or from the gateway's own address.
    c.ClassAuthenticator.host_addresses = ["127.0.0.1", "::1", HUB_IP]
    public = [h for h in env("DLLAB_HUB_PUBLIC_HOSTS", "").split(",") if h]
    c.ClassAuthenticator.host_names = [f"127.0.0.1:{PORT}", f"localhost:{PORT}", *public]
    # Approval is NativeAuthenticator's gate: whoever it lets log in is allowed.
    c.Authenticator.allow_all = True
c.Authenticator.admin_users = {ADMIN}

# --- services: the idle culler, and dllab.hub's token (stop, tests, benchmarks) -----------------
c.JupyterHub.services = [
    {
        "name": "idle-culler",
        "command": [
            sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={CULL_TIMEOUT}",
            "--cull-every=60",
        ],
    }
]  # fmt: skip
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

# --- one container per learner ------------------------------------------------------------------


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
c.DockerSpawner.name_template = f"{NAME}-{{username}}"
c.DockerSpawner.network_name = NETWORK
c.DockerSpawner.use_internal_ip = True  # the proxy (on the host) reaches containers by IP
# A stopped server's container goes; the next start uses the newest image.
c.DockerSpawner.remove = True
# The image is here before the hub starts: `invoke hub` pulls it (the tag of the checkout's locks,
# from DLLAB_REGISTRY) or builds it first (dllab.images.ensure). So a spawn never waits minutes on a
# registry inside its start timeout, and a tag moved mid-course never reaches a learner unseen.
c.DockerSpawner.pull_policy = "never"
# The learner's work: a named volume each, kept across server restarts, hub restarts and rebuilds.
# nocopy: Docker would otherwise copy the image's /work (UID 1000's, 0755) over the owner and mode
# of a volume with no files yet, undoing what the pre-spawn hook gave the learner.
c.DockerSpawner.volumes = {f"{NAME}-work-{{username}}": {"bind": "/work", "mode": "rw,nocopy"}}
c.DockerSpawner.mem_limit = MEM_LIMIT
c.DockerSpawner.cpu_limit = CPU_LIMIT
# A 10 GB cuda image on a cold disk: give the first start time.
c.Spawner.start_timeout = 600
c.Spawner.http_timeout = 120


def _gpu_for(client, learner: str) -> str:
    """The GPU a learner's server gets: the one fewest running hub servers use (dllab.gpus.pick)."""
    running = client.containers.list(filters={"label": f"dllab.hub={NAME}"})
    servers = [(s.labels.get("dllab.gpu"), s.labels.get("dllab.learner")) for s in running]
    try:
        return gpus.pick(GPUS, gpus.load(servers, GPUS, learner), GPU_USERS)
    except gpus.NoGpu as exc:
        raise RuntimeError(str(exc)) from None


def pre_spawn_hook(spawner) -> None:
    """The learner's UID, their volume (theirs, 0700), their GPU, and dllab's container rules."""
    client = docker.from_env()
    learner = spawner.user.name
    uid = UIDS.uid(learner)
    labels = dllab_hub.labels(**{"dllab.learner": learner, "dllab.variant": VARIANT.name})
    volume = f"{NAME}-work-{spawner.escaped_name}"
    try:
        client.volumes.get(volume)
    except docker.errors.NotFound:
        client.volumes.create(volume, labels=labels)
        # A new volume is a copy of the image's /work (UID 1000's): give it to the learner.
        client.containers.run(**containers.volume_owner_run(IMAGE, volume, uid))
    gpus = (_gpu_for(client, learner),) if GPU else None
    if gpus:
        labels["dllab.gpu"] = gpus[0]
    spec = containers.Spec(VARIANT, f"{uid}:{uid}", labels, gpus)
    spawner.extra_create_kwargs = spec.create_kwargs()
    spawner.extra_host_config = spec.host_config()


c.Spawner.pre_spawn_hook = pre_spawn_hook

# --- the class's progress from the labs' self-checks, at /services/progress/ (last: it adds to
# the services, roles, groups and Spawner.environment set above) ---------------------------------
progress.configure(c, STATE, HUB_IP, int(env("DLLAB_HUB_PROGRESS_PORT", "10101")))
