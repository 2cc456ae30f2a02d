"""Containers for image tests: started through the Docker SDK, always removed afterwards."""

from __future__ import annotations

import time

import pytest

from tests.support import engine_answers, missing

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

    tag = f"dllab:{variant}"
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


@pytest.fixture
def containers(client):
    tracked = Containers(client)
    yield tracked
    tracked.remove_all()


@pytest.fixture(scope="session")
def cpu_image(client):
    return image_or_skip(client, "cpu")


@pytest.fixture(scope="session")
def cuda_image(client):
    return image_or_skip(client, "cuda")
