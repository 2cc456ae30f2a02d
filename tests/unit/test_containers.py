"""dllab.containers' engine checks (with a fake Runner) and port helpers: the one place their
messages come from."""

from __future__ import annotations

import json
import socket

import pytest

from dllab import containers, variants
from dllab.errors import UserError
from dllab.runner import Done, Runner

CPU = variants.get("cpu")
CUDA = variants.get("cuda")


class Fake(Runner):
    """A Runner answering each command by its first two words (`docker info`, `docker image`)."""

    def __init__(self, answers: dict[str, Done]):
        super().__init__()
        self.answers, self.ran = answers, []

    def __call__(self, cmd, **kwargs) -> Done:
        self.ran.append(list(cmd))
        return self.answers.get(" ".join(cmd[:2]), Done(0))


def answering(answers: dict[str, tuple[int, str] | Done]) -> Fake:
    return Fake({k: v if isinstance(v, Done) else Done(*v) for k, v in answers.items()})  # fmt: skip


def info(**fields) -> tuple[int, str]:
    return 0, json.dumps({"ServerVersion": "24.0.0", **fields})


def test_an_engine_that_answers_gives_its_docker_info():
    run = answering({"docker info": info(Runtimes={"runc": {}, "nvidia": {}})})
    assert containers.check_engine(run)["ServerVersion"] == "24.0.0"
    assert run.ran == [["docker", "info", "--format", "{{json .}}"]]
    assert containers.engine_answers(run)


@pytest.mark.parametrize(
    "answer",
    [
        (1, ""),  # the engine's socket refuses: older CLIs exit 1
        (0, json.dumps({"ServerErrors": ["Cannot connect to the Docker daemon"]})),  # CLI 23+
        (0, "not json"),
    ],
)
def test_no_engine_says_how_to_start_one(answer, monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    run = answering({"docker info": answer})
    with pytest.raises(UserError) as error:
        containers.check_engine(run)
    assert str(error.value) == (
        "no Docker engine answers: start Docker (Docker Desktop, or `sudo systemctl start docker`), "
        "then run this again"
    )
    assert not containers.engine_answers(run)


PERMISSION = (
    "permission denied while trying to connect to the Docker daemon socket at "
    'unix:///var/run/docker.sock: Get "http://%2Fvar%2Frun%2Fdocker.sock/v1.41/info": dial '
    "unix /var/run/docker.sock: connect: permission denied"
)


@pytest.mark.parametrize(
    "answer",
    [
        Done(1, "", PERMISSION),  # older CLIs: exit 1, the reason on stderr
        Done(0, json.dumps({"ServerErrors": [PERMISSION]})),  # CLI 23+
    ],
)
def test_permission_denied_names_the_docker_group_not_start_docker(answer, monkeypatch):
    """Docker runs but the socket refuses you: the docker group and newgrp, never 'start Docker'."""
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    with pytest.raises(UserError) as error:
        containers.check_engine(answering({"docker info": answer}))
    assert str(error.value) == (
        "Docker runs, but you may not use it (permission denied on unix:///var/run/docker.sock): "
        "add yourself to the docker group (`sudo usermod -aG docker $USER`), then `newgrp docker` "
        "or log out and back in"
    )


@pytest.mark.parametrize(
    ("variable", "value"), [("DOCKER_HOST", "tcp://nowhere:2375"), ("DOCKER_CONTEXT", "remote")]
)
def test_a_docker_host_or_context_that_points_nowhere_is_named(variable, value, monkeypatch):
    """DOCKER_HOST or DOCKER_CONTEXT set, and nothing answers there: the variable is named."""
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv(variable, value)
    failed = Done(1, "", f"Cannot connect to the Docker daemon at {value}")
    with pytest.raises(UserError) as error:
        containers.check_engine(answering({"docker info": failed}))
    assert str(error.value) == (
        f"no Docker engine answers at {variable}={value}: unset it (`unset {variable}`) to use "
        "this machine's engine, or start the engine it names"
    )


def test_no_docker_command_says_install_it(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UserError, match=r"^docker is not installed: install Docker"):
        containers.check_engine()  # the real Runner: no docker on PATH answers 127
    assert not containers.engine_answers()


def test_the_gpu_runtime_is_read_from_docker_info():
    assert containers.gpu_runtime({"Runtimes": {"runc": {}, "nvidia": {}}}, CUDA)
    assert not containers.gpu_runtime({"Runtimes": {"runc": {}}}, CUDA)
    assert not containers.gpu_runtime({}, CUDA)
    assert not containers.gpu_runtime({"Runtimes": {"nvidia": {}}}, CPU)  # cpu needs none


def test_a_missing_image_names_the_build_that_makes_it(monkeypatch):
    monkeypatch.setattr(variants, "host_platform", lambda: "linux-x86_64")
    missing = answering({"docker image": (1, "")})
    with pytest.raises(UserError) as error:
        containers.check_image(CPU, run=missing)
    assert (
        str(error.value) == "image dllab:cpu is missing: build it with `invoke build --variant cpu`"
    )
    with pytest.raises(UserError) as error:
        containers.check_image(CPU, "linux-aarch64", run=missing)
    assert str(error.value) == (
        "image dllab:cpu-linux-aarch64 is missing: "
        "build it with `invoke build --variant cpu --platform linux-aarch64`"
    )
    with pytest.raises(UserError, match=r"^image dllab:cpu is missing: .* --variant cpu`$"):
        containers.check_image(CPU, "linux-x86_64", run=missing)  # the engine's own platform
    assert missing.ran[-1] == ["docker", "image", "inspect", "dllab:cpu"]


def test_an_image_that_exists_passes():
    run = answering({"docker image": (0, "[]")})
    containers.check_image(CPU, image="dllab:mine", run=run)
    assert run.ran == [["docker", "image", "inspect", "dllab:mine"]]


@pytest.mark.parametrize(
    ("value", "words"),
    [("abc", "must be a port number"), ("70000", "must be a port number"), (80, "privileged")],
)
def test_a_port_number_is_one_a_user_may_listen_on(monkeypatch, value, words):
    monkeypatch.setattr(containers.os, "getuid", lambda: 1000)
    with pytest.raises(UserError, match=f"^--port .*{words}"):
        containers.port_number(value)
    assert containers.port_number(" 8888 ") == 8888
    monkeypatch.setattr(containers.os, "getuid", lambda: 0)
    assert containers.port_number(80) == 80


def test_a_busy_port_is_not_free_and_the_next_free_one_is_found():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not containers.port_free(port)
        assert containers.free_port(port) in range(port + 1, port + 20)
    assert containers.port_free(containers.any_free_port())
