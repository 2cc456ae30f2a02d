"""Containers for image tests: started through the Docker SDK, always removed afterwards."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request

import pytest

from dllab import variants
from dllab.containers import engine_answers
from tests.support import missing

pytestmark = pytest.mark.docker


@pytest.fixture(scope="session")
def client():
    if not engine_answers():
        missing("docker", "no Docker engine answers (start one: .ci/engine)")
    import docker

    return docker.from_env()


def image_or_skip(client, variant: str) -> str:
    """The tag of a built image, or a skip saying how to build it."""
    import docker

    tag = variants.get(variant).image
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        missing(f"image-{variant}", f"no {tag} image: run `invoke build --variant {variant}`")
    return tag


class Containers:
    """Starts containers and removes every one of them, whatever the test did."""

    def __init__(self, client):
        self.client = client
        self.started = []

    def run(self, image: str, command=None, **kwargs):
        kwargs.setdefault("labels", {"dllab.test": "image"})
        container = self.client.containers.run(image, command, detach=True, **kwargs)
        self.started.append(container)
        return container

    def output(self, image: str, command, timeout: float = 600, **kwargs) -> tuple[int, str]:
        """Run `command` to its end: (exit code, stdout + stderr)."""
        container = self.run(image, command, **kwargs)
        code = container.wait(timeout=timeout)["StatusCode"]
        return code, container.logs().decode()

    def wait_healthy(self, container, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            container.reload()
            health = container.attrs["State"].get("Health", {}).get("Status")
            if health == "healthy":
                return
            if container.status == "exited":
                break
            time.sleep(0.5)
        raise AssertionError(
            f"not healthy ({container.status}): {container.logs().decode()[-2000:]}"
        )

    def remove_all(self) -> None:
        while self.started:
            self.started.pop().remove(force=True)


TOKEN = "dllab-test-token"


def http_status(url: str) -> int:
    try:
        return urllib.request.urlopen(url, timeout=5).status
    except urllib.error.HTTPError as err:
        return err.code


def host_port(container) -> int:
    container.reload()
    return int(container.ports["8888/tcp"][0]["HostPort"])


def work_dir(tmp_path, uid: int = 1000, gid: int = 1000):
    work = tmp_path / "work"
    work.mkdir()
    os.chown(work, uid, gid)
    return work


def as_invoke_lab_does(work, token: str | None = None, uid: int = 1000, gid: int = 1000) -> dict:
    """The `docker run` options `invoke lab` uses (containers.lab_command), for the Docker SDK."""
    options = {
        "user": f"{uid}:{gid}", "group_add": ["100"], "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"], "ports": {"8888/tcp": ("127.0.0.1", None)},
        "shm_size": "2g",
    }  # fmt: skip
    if work is not None:
        options["volumes"] = {str(work): {"bind": "/work"}}
    if token:
        options["environment"] = {"JUPYTER_TOKEN": token}
    return options


def api(container, path: str, method: str = "GET", body: dict | None = None):
    """A Jupyter REST call to a container started with TOKEN: the decoded JSON answer."""
    import json

    request = urllib.request.Request(
        f"http://127.0.0.1:{host_port(container)}{path}?token={TOKEN}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or "null")


@pytest.fixture
def lab(containers, image, tmp_path):
    """A JupyterLab container of each variant started as `invoke lab` starts one, healthy."""
    container = containers.run(image, **as_invoke_lab_does(work_dir(tmp_path), TOKEN))
    containers.wait_healthy(container)
    return container


@pytest.fixture
def containers(client):
    tracked = Containers(client)
    yield tracked
    tracked.remove_all()


DOCKER_VARIANTS = [v.name for v in variants.VARIANTS.values() if v.dockerized]


@pytest.fixture(scope="session", params=DOCKER_VARIANTS)
def image(request, client):
    """Each Docker variant's image in turn, for what every variant's image must do alike."""
    return image_or_skip(client, request.param)


@pytest.fixture(scope="session")
def cpu_image(client):
    return image_or_skip(client, "cpu")


@pytest.fixture(scope="session")
def cuda_image(client):
    return image_or_skip(client, "cuda")
