"""Bad input to `python -m dllab.hub`, for real: one line on stderr, exit 2, never a traceback."""

from __future__ import annotations

import socket
import subprocess

import pytest

from dllab import variants
from dllab.containers import any_free_port
from tests.hub.client import Hub, hub_env

pytestmark = pytest.mark.docker


@pytest.fixture
def hub(tmp_path):
    return Hub(any_free_port(), tmp_path, hub_env(tmp_path))


def one_line(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dllab: "), result.stderr
    assert all(word in lines[0] for word in words), lines[0]


def test_a_busy_port_is_refused(hub, engine_and_image):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", hub.port))
        busy.listen()
        one_line(hub.start(), f"port {hub.port}", "busy", "--port")


def test_no_engine_is_said(hub):
    hub.env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    one_line(hub.start(), "no Docker engine answers")


def test_a_missing_image_is_pulled_first_and_a_bad_registry_setting_is_said(hub, engine_and_image):
    """A missing image is pulled (or built) before the hub starts: a registry named with a scheme
    is one line naming the setting, before anything is pulled, built or started."""
    image = variants.get("cuda").image
    if not subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode:
        pytest.skip(f"{image} exists here, so no variant's image is missing")
    hub.env["DLLAB_REGISTRY"] = "https://registry.example.org/course"
    one_line(hub.start("--variant", "cuda"), "DLLAB_REGISTRY 'https://registry.example.org/course' has a scheme")  # fmt: skip
    assert not (hub.state / "hub.pid").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--variant", "tpu"), ("unknown variant 'tpu'", "cpu, cuda")),
        (("--variant", "metal"), ("native only",)),
        (("--port", "http"), ("--port",)),
        (("--admin", "a b"), ("admin name",)),
    ],
)
def test_bad_arguments_are_one_line(hub, args, words):
    one_line(hub.start(*args), *words)


def test_a_stale_pid_file_is_said(hub):
    (hub.state / "hub.pid").write_text("999999")
    one_line(hub.start(), "stale pid file", "remove it")
    one_line(hub.cli("stop"), "stale pid file")


def test_stop_without_a_hub_is_said(hub):
    one_line(hub.cli("stop"), "no hub of yours is running here")
