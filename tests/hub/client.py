"""A small JupyterHub + Jupyter server client for the hub tests and figures: REST, and kernels over
their websocket (websocket-client, which jupyter_server already brings)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

from dllab import containers, hub, runner
from dllab.variants import ROOT

# The tests' hubs are an instance of their own: never the hub you run from this checkout.
INSTANCE = "hubtest"


@contextlib.contextmanager
def as_instance(instance: str = INSTANCE):
    """DLLAB_INSTANCE set to `instance` for what runs inside."""
    previous = os.environ.get("DLLAB_INSTANCE")
    os.environ["DLLAB_INSTANCE"] = instance
    try:
        yield
    finally:
        os.environ.pop("DLLAB_INSTANCE")
        if previous is not None:
            os.environ["DLLAB_INSTANCE"] = previous


def hub_name(instance: str = INSTANCE) -> str:
    """The name of the tests' hub: the prefix of its containers, volumes and network."""
    with as_instance(instance):
        return hub.name()


def hub_env(state, instance: str = INSTANCE) -> dict[str, str]:
    return {
        "DLLAB_HUB_STATE": str(state),
        # The hub's software is the same for every hub here: install it once, where `start` does.
        "DLLAB_HUB_VENV": os.environ.get("DLLAB_HUB_VENV", str(ROOT / ".hub" / "venv")),
        "DLLAB_INSTANCE": instance,
        "DLLAB_HUB_MEM_LIMIT": "2G",
        "DLLAB_HUB_CPU_LIMIT": "1",
    }


def remove_everything(instance: str = INSTANCE) -> None:
    """Every container, network and volume of the tests' hub (this checkout's, that instance's)."""
    run = runner.Runner()
    with as_instance(instance):
        filters = hub.filters()
    if ids := run(containers.list_command(filters)).out.split():
        run(containers.remove_command(*ids))
    if ids := run(containers.networks_command(filters)).out.split():
        run(containers.remove_networks_command(*ids))
    listing = run(containers.volumes_command(filters)).out.splitlines()
    if names := [line.split("\t")[0] for line in listing]:
        run(containers.remove_volumes_command(*names))


# Two small training steps, written here rather than imported from dllab, so that they test the
# image's frameworks and not the package's helpers. Each prints one JSON line.
TENSORFLOW_STEP = """
import json, tensorflow as tf
tf.random.set_seed(0)
X = tf.random.normal([256, 8]); y = X @ tf.ones([8, 1])
w = tf.Variable(tf.zeros([8, 1])); losses = []
for _ in range(10):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean((X @ w - y) ** 2)
    w.assign_sub(0.1 * tape.gradient(loss, w)); losses.append(float(loss))
print(json.dumps({"framework": "tensorflow", "device": w.device, "losses": losses}))
"""
TORCH_STEP = """
import json, torch
torch.manual_seed(0)
X = torch.randn(256, 8); y = X @ torch.ones(8, 1)
net = torch.nn.Linear(8, 1); opt = torch.optim.SGD(net.parameters(), lr=0.1); losses = []
for _ in range(10):
    opt.zero_grad(); loss = ((net(X) - y) ** 2).mean(); loss.backward(); opt.step()
    losses.append(loss.item())
print(json.dumps({"framework": "torch", "device": str(next(net.parameters()).device), "losses": losses}))
"""


class KernelDied(Exception):
    """The kernel died (or restarted) while running the code."""


@dataclass
class Hub:
    """A hub started by `python -m dllab.hub start`, driven through its REST API."""

    port: int
    state: Path
    env: dict = field(default_factory=dict)
    root: Path = ROOT  # the checkout whose dllab runs it
    started: subprocess.CompletedProcess | None = None  # what `start` printed

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return (self.state / "api_token").read_text().strip()

    @property
    def admin_password(self) -> str:
        return (self.state / "admin-password").read_text().strip()

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """`python -m dllab.hub ARGS` of this hub's checkout, with its state folder and instance,
        as `invoke hub` runs it (its hints name `invoke`, even under `python3 tasks.py test`)."""
        env = {k: v for k, v in os.environ.items() if k != "DLLAB_TASKS_PROGRAM"}
        return subprocess.run(
            [sys.executable, "-m", "dllab.hub", *args],
            capture_output=True, text=True, cwd=self.root, timeout=timeout,
            env={**env, "PYTHONPATH": str(self.root / "src"), **self.env},
        )  # fmt: skip

    def start(self, *args: str) -> subprocess.CompletedProcess:
        self.started = self.cli("start", "--port", str(self.port), *args)
        return self.started

    def api(self, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
        headers = {"Authorization": f"token {token or self.token}"}
        return requests.request(
            method, f"{self.url}/hub/api{path}", headers=headers, timeout=30, **kwargs
        )

    def create_user(self, name: str) -> str:
        """Create `name` (if new) and return a token of theirs."""
        response = self.api("POST", f"/users/{name}")
        assert response.status_code in (201, 409), response.text
        response = self.api("POST", f"/users/{name}/tokens", json={"note": "dllab tests"})
        assert response.status_code in (200, 201), response.text
        return response.json()["token"]

    def spawn(self, name: str, timeout: float = 300) -> float:
        """Start `name`'s server and wait until it is ready; the seconds it took."""
        began = time.monotonic()
        response = self.api("POST", f"/users/{name}/server")
        assert response.status_code in (201, 202), response.text
        self.wait(name, ready=True, timeout=timeout)
        return time.monotonic() - began

    def stop_server(self, name: str, timeout: float = 120) -> None:
        response = self.api("DELETE", f"/users/{name}/server")
        assert response.status_code in (202, 204), response.text
        self.wait(name, ready=False, timeout=timeout)

    def wait(self, name: str, ready: bool, timeout: float) -> None:
        began = time.monotonic()
        while time.monotonic() < began + timeout:
            server = self.api("GET", f"/users/{name}").json().get("servers", {}).get("")
            if ready and server and server.get("ready"):
                return
            if not ready and not server:
                return
            if ready and not server and time.monotonic() > began + 5:
                log = (self.state / "hub.log").read_text()[-3000:]
                raise AssertionError(f"{name}'s server stopped while starting:\n{log}")
            time.sleep(0.25)
        raise AssertionError(
            f"{name}'s server not {'ready' if ready else 'stopped'} in {timeout} s"
        )

    def server(self, name: str, token: str) -> Server:
        return Server(f"{self.url}/user/{name}", token)


@dataclass
class Server:
    """One user's single-user server behind the hub's proxy."""

    url: str
    token: str

    def get(self, path: str, token: str | None = None) -> requests.Response:
        headers = {"Authorization": f"token {token or self.token}"}
        return requests.get(f"{self.url}{path}", headers=headers, timeout=30, allow_redirects=False)

    def put_file(self, name: str, text: str) -> None:
        response = requests.put(
            f"{self.url}/api/contents/{name}",
            headers={"Authorization": f"token {self.token}"},
            json={"type": "file", "format": "text", "content": text},
            timeout=30,
        )
        assert response.status_code in (200, 201), response.text

    def read_file(self, name: str) -> str | None:
        response = self.get(f"/api/contents/{name}")
        return response.json()["content"] if response.status_code == 200 else None

    def start_kernel(self) -> str:
        response = requests.post(
            f"{self.url}/api/kernels",
            headers={"Authorization": f"token {self.token}"},
            json={"name": "python3"},
            timeout=60,
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def execute(self, kernel: str, code: str, timeout: float = 300) -> str:
        """Run `code` in `kernel` over its websocket; its stdout (AssertionError on an error)."""
        import websocket

        ws_url = self.url.replace("http://", "ws://") + f"/api/kernels/{kernel}/channels"
        ws = websocket.create_connection(
            ws_url, header=[f"Authorization: token {self.token}"], timeout=timeout
        )
        return run_code(ws, code, timeout)


def run_code(ws, code: str, timeout: float = 300) -> str:
    """Run `code` through a kernel's open websocket, then close it; its stdout (AssertionError on
    an error)."""
    import websocket

    msg_id = uuid.uuid4().hex
    ws.send(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id, "msg_type": "execute_request", "session": uuid.uuid4().hex,
                    "username": "test", "version": "5.3", "date": "",
                },
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": code, "silent": False, "store_history": False,
                            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
            }
        )
    )  # fmt: skip
    out, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                raw = ws.recv()
            except websocket.WebSocketConnectionClosedException:
                raise KernelDied("the kernel's websocket closed") from None
            msg = json.loads(raw)
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content.get("execution_state") in ("dead", "restarting"):
                raise KernelDied(content["execution_state"])
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                raise AssertionError("\n".join(content["traceback"])[-3000:])
            elif kind == "status" and content["execution_state"] == "idle":
                # Not execute_reply: the shell channel's reply can overtake the last output on
                # iopub; idle comes on iopub after every output of the request.
                return "".join(out)
        raise AssertionError(f"no reply in {timeout} s; output so far: {''.join(out)!r}")
    finally:
        ws.close()


def form(session: requests.Session, url: str, **fields: str) -> requests.Response:
    """POST a hub form the way a browser does: with the _xsrf token from the page's cookie."""
    session.get(url, timeout=30)
    fields["_xsrf"] = session.cookies.get("_xsrf", "")
    return session.post(url, data=fields, timeout=30, allow_redirects=False)


def train(server: Server, kernel: str, code: str) -> dict:
    """Run a training step in the kernel and check that its loss fell."""
    result = json.loads(server.execute(kernel, code).strip().splitlines()[-1])
    assert result["losses"][-1] < result["losses"][0], result
    return result
