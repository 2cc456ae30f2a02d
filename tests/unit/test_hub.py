"""dllab.hub's argument lists and messages, without an engine or a hub."""

from __future__ import annotations

import ast
import socket
import subprocess
from pathlib import Path

import pytest

from dllab import containers, hub
from dllab.errors import UserError


@pytest.fixture
def paths(tmp_path) -> hub.Paths:
    return hub.Paths(venv=tmp_path / "venv", state=tmp_path / "state")


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    code = hub.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_hub_installs_from_its_own_hashed_requirements(paths):
    """pip gets --require-hashes and deploy/jupyterhub/requirements.txt, never the lab's lock."""
    cmd = hub.install_command(paths)
    assert cmd[:4] == [str(paths.venv / "bin" / "python"), "-m", "pip", "install"]
    assert "--require-hashes" in cmd and cmd[-1] == str(hub.REQUIREMENTS)


def test_requirements_pin_the_hub_the_images_are_locked_to():
    """jupyterhub 5.5.x in the hub and in every lab lock; dockerspawner 14.0.0; every pin hashed."""
    text = hub.REQUIREMENTS.read_text()
    pins = dict(
        line.split(" ")[0].split("==") for line in text.splitlines() if "==" in line and line[0] != " "
    )  # fmt: skip
    assert pins["jupyterhub"].startswith("5.5.") and pins["dockerspawner"] == "14.0.0"
    assert {"jupyterhub-idle-culler", "jupyterhub-nativeauthenticator"} <= pins.keys()
    assert text.count("--hash=sha256:") >= len(pins)
    for lock in Path(hub.ROOT / "locks").glob("*.txt"):
        assert f"jupyterhub=={pins['jupyterhub']} " in lock.read_text(), lock.name


def test_the_proxy_installs_from_its_package_lock_into_the_venv(paths):
    """npm ci (the lock's exact versions and integrity hashes) under a project-local prefix."""
    assert hub.proxy_command(paths)[:2] == ["npm", "ci"]
    assert hub.proxy_command(paths)[-2:] == ["--prefix", str(paths.proxy_prefix)]
    assert "--global" not in hub.proxy_command(paths)
    assert '"configurable-http-proxy": "5.3.0"' in (hub.PROXY_PACKAGE / "package.json").read_text()
    assert "integrity" in (hub.PROXY_PACKAGE / "package-lock.json").read_text()


def test_engine_objects_are_found_by_the_hubs_label_only(monkeypatch):
    """Containers and volumes are listed by dllab.hub=<prefix>, so nothing else is touched."""
    monkeypatch.setenv("DLLAB_HUB_PREFIX", "dllab-hubunit")
    assert "label=dllab.hub=dllab-hubunit" in hub.containers_command()
    assert "label=dllab.hub=dllab-hubunit" in hub.volumes_command()
    network = hub.network_command("n")
    assert network[-1] == "n" and "dllab.hub=dllab-hubunit" in network
    assert (
        "com.docker.network.bridge.enable_icc=false" in network
    )  # learners can't reach each other


def test_hub_command_runs_the_repos_config(paths):
    assert hub.hub_command(paths) == [str(paths.jupyterhub), "--config", str(hub.CONFIG)]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["start", "--variant", "tpu"], "unknown variant 'tpu'"),
        (["start", "--variant", "metal"], "native only"),
        (["start", "--port", "x"], "argument --port"),
        (["start", "--port", "70000"], "--port must be a port number from 1024 to 65535"),
        (["start", "--admin", "a b"], "admin name"),
        (["frob"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(capsys, monkeypatch, tmp_path, argv, words):
    monkeypatch.setenv("DLLAB_HUB_STATE", str(tmp_path))
    monkeypatch.setattr(hub.containers, "check_engine", lambda: {})
    monkeypatch.setattr(hub.containers, "check_image", lambda variant: None)
    code, out, err = run_main(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("dllab: ") and words in err


def test_a_busy_port_names_the_flag():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UserError, match=f"port {port} on 127.0.0.1 is busy: choose another with --port"):  # fmt: skip
            hub.check_port(port)


def test_no_docker_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path):
    """The engine check is containers': its message, through the hub's one-line ending."""
    monkeypatch.setenv("DLLAB_HUB_STATE", str(tmp_path))
    monkeypatch.setenv("PATH", "/nonexistent")
    port = str(containers.any_free_port())
    code, out, err = run_main(capsys, "start", "--port", port)
    assert code == 2 and out == ""
    assert err == f"dllab: {containers.NO_DOCKER}\n"


def test_a_stale_pid_file_is_named(paths):
    paths.state.mkdir(parents=True)
    paths.pid.write_text("999999")
    with pytest.raises(UserError, match="stale pid file .*999999 is not a running hub"):
        hub.running_pid(paths)


def test_remove_volumes_lists_and_asks_for_yes(monkeypatch, paths, capsys):
    """Without --yes it says what it would delete and exits 2; it never deletes then."""
    calls = []

    def fake(cmd, **kw):
        calls.append(cmd)
        out = "dllab-hub-work-alice\talice\ndllab-hub-work-bob\tbob\n" if "ls" in cmd else ""
        return subprocess.CompletedProcess(cmd, 0, out, "")

    monkeypatch.setattr(hub, "_run", fake)
    monkeypatch.setattr(hub.containers, "check_engine", lambda: {})
    with pytest.raises(UserError, match="2 volumes .* pass --yes"):
        hub.remove_volumes(False, paths)
    assert (
        "would delete volume dllab-hub-work-alice (user alice's /work)" in capsys.readouterr().out
    )
    assert not any("rm" in cmd for cmd in calls)
    assert hub.remove_volumes(True, paths) == ["dllab-hub-work-alice", "dllab-hub-work-bob"]
    assert calls[-1] == ["docker", "volume", "rm", "dllab-hub-work-alice", "dllab-hub-work-bob"]


def test_stop_never_removes_a_volume():
    """`stop` removes containers and the network; only `remove-volumes` names `docker volume rm`."""
    source = Path(hub.__file__).read_text()
    stop = ast.get_source_segment(source, next(
        node for node in ast.parse(source).body if getattr(node, "name", "") == "stop"
    ))  # fmt: skip
    assert "volume" not in stop.split('"""')[-1]  # the code, after its docstring


def test_the_config_keeps_learners_non_root_and_apart():
    """The DockerSpawner config: user 1000:100, caps dropped, no-new-privileges, a volume per user."""
    config = hub.CONFIG.read_text()
    for line in (
        'c.DockerSpawner.cmd = ["jupyterhub-singleuser"]',
        'c.JupyterHub.bind_url = f"http://127.0.0.1:{PORT}"',
        '"cap_drop": ["ALL"]',
        '"security_opt": ["no-new-privileges"]',
        'UID_GID = env("DLLAB_HUB_USER", "1000:100")',
        'c.DockerSpawner.volumes = {f"{PREFIX}-work-{{username}}": "/work"}',
        '"dllab.owner": "{raw_username}"',
        "jupyterhub_idle_culler",
        "c.DockerSpawner.remove = True",
    ):
        assert line in config, line
