"""dllab.hub's argument lists and messages, without an engine or a hub."""

from __future__ import annotations

import ast
import socket
from pathlib import Path

import pytest

from dllab import accounts, containers, hub, runner
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


def test_engine_objects_are_found_by_owner_checkout_instance_and_hub(monkeypatch):
    """Containers, volumes and networks are listed by this owner's, checkout's and instance's
    labels and the hub's own name, so another checkout's or instance's hub is never touched."""
    monkeypatch.setenv("DLLAB_INSTANCE", "unit")
    name = hub.name()
    owner = containers.Owner.current()
    assert name == f"dllab-hub-{owner.uid}-{containers.checkout_id()}-unit"
    filters = hub.filters()
    for label in (f"dllab.owner={owner.uid}", f"dllab.checkout={containers.checkout_id()}",
                  "dllab.instance=unit", "dllab.role=hub", f"dllab.hub={name}"):  # fmt: skip
        assert f"label={label}" in filters
    for cmd in (containers.list_command(filters), containers.volumes_command(filters),
                containers.networks_command(filters)):  # fmt: skip
        assert all(f in cmd for f in filters)
    network = containers.network_command(f"{name}-net", hub.labels())
    assert network[-1] == f"{name}-net" and f"dllab.hub={name}" in network
    assert (
        "com.docker.network.bridge.enable_icc=false" in network
    )  # learners can't reach each other
    monkeypatch.delenv("DLLAB_HUB_STATE", raising=False)
    state = hub.Paths.default().state
    monkeypatch.setenv("DLLAB_INSTANCE", "other")
    assert hub.name() != name and hub.Paths.default().state != state
    assert hub.Paths.default().state.name == ".hub-other"


def test_hub_command_runs_the_repos_config(paths):
    assert hub.hub_command(paths) == [str(paths.jupyterhub), "--config", str(hub.CONFIG)]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["start", "--variant", "tpu"], "unknown variant 'tpu'"),
        (["start", "--variant", "metal"], "native only"),
        (["start", "--port", "x"], "--port must be a port number from 1024 to 65535, not 'x'"),
        (["start", "--port", "70000"], "--port must be a port number from 1024 to 65535"),
        (["start", "--admin", "a b"], "admin name 'a b' is not allowed: use 1-32 lowercase ASCII"),
        (
            ["start", "--admin", "x" * 300],
            "admin name 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'... is not allowed",
        ),
        (
            ["start", "--admin", "lehrerin-jürgen"],
            "is not allowed: use 1-32 lowercase ASCII letters",
        ),
        (["start", "--admin", "Teacher"], "is not allowed"),
        (["frob"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(capsys, monkeypatch, tmp_path, argv, words):
    monkeypatch.setenv("DLLAB_HUB_STATE", str(tmp_path / "state"))
    monkeypatch.setattr(hub.containers, "check_engine", lambda *a, **k: {})
    monkeypatch.setattr(hub.containers, "check_image", lambda *a, **k: None)
    code, out, err = run_main(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("dllab: ") and words in err
    assert not (tmp_path / "state").exists()  # refused before anything is made


def test_a_busy_port_is_refused_before_the_state_folder_is_made(capsys, monkeypatch, tmp_path):
    """A busy --port: one line naming the flag, and no state folder left behind."""
    monkeypatch.setenv("DLLAB_HUB_STATE", str(tmp_path / "state"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = run_main(capsys, "start", "--port", str(port))
    assert code == 2 and err == f"dllab: port {port} on 127.0.0.1 is busy: choose another with --port\n"  # fmt: skip
    assert not (tmp_path / "state").exists()


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


class Fake(runner.Runner):
    """A Runner that lists two learners' volumes, no running server, and records the rest."""

    def __init__(self):
        super().__init__()
        self.ran: list[list[str]] = []

    def __call__(self, cmd, **kwargs):
        self.ran.append(list(cmd))
        listing = "v-alice\talice\nv-bob\tbob\n" if cmd[1:3] == ["volume", "ls"] else ""
        return runner.Done(0, listing)


def test_remove_volumes_lists_and_asks_for_yes(monkeypatch, paths, capsys):
    """Without --yes it says what it would delete and exits 2; it never deletes then; it deletes
    only this hub's volumes, by their labels."""
    monkeypatch.setattr(hub.containers, "check_engine", lambda *a, **k: {})
    run = Fake()
    with pytest.raises(UserError, match="2 volumes .* pass --yes"):
        hub.remove_volumes(run, False, paths)
    assert "would delete volume v-alice (alice's /work)" in capsys.readouterr().out
    assert not any("rm" in cmd for cmd in run.ran)
    assert hub.remove_volumes(run, True, paths) == ["v-alice", "v-bob"]
    assert run.ran[-1] == ["docker", "volume", "rm", "v-alice", "v-bob"]
    [listed] = [cmd for cmd in run.ran[:3] if cmd[1:3] == ["volume", "ls"]]
    assert all(f in listed for f in hub.filters())


def test_remove_volumes_is_refused_while_the_hubs_servers_run(monkeypatch, paths):
    """A learner's server of this hub still there: stop the hub first (the exact command)."""
    monkeypatch.setattr(hub.containers, "check_engine", lambda *a, **k: {})
    monkeypatch.delenv("DLLAB_TASKS_PROGRAM", raising=False)
    monkeypatch.delenv("DLLAB_INSTANCE", raising=False)

    class Running(Fake):
        def __call__(self, cmd, **kwargs):
            done = super().__call__(cmd, **kwargs)
            return runner.Done(0, "abc123\n") if cmd[1] == "ps" else done

    run = Running()
    with pytest.raises(UserError, match=r"this hub is running: stop it first with `invoke hub --stop`"):  # fmt: skip
        hub.remove_volumes(run, True, paths)
    assert not any("rm" in cmd for cmd in run.ran)


def test_stop_never_removes_a_volume():
    """`stop` removes containers and the network; only `remove-volumes` names `docker volume rm`."""
    source = Path(hub.__file__).read_text()
    stop = ast.get_source_segment(source, next(
        node for node in ast.parse(source).body if getattr(node, "name", "") == "stop"
    ))  # fmt: skip
    assert "volume" not in stop.split('"""')[-1]  # the code, after its docstring


def load_config(monkeypatch, tmp_path, **env: str):
    """deploy/jupyterhub/jupyterhub_config.py as JupyterHub loads it, with DLLAB_HUB_* set."""
    from traitlets.config.loader import PyFileConfigLoader

    monkeypatch.setenv("DLLAB_HUB_STATE", str(tmp_path))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return PyFileConfigLoader(hub.CONFIG.name, str(hub.CONFIG.parent)).load_config()


def test_the_config_keeps_learners_non_root_apart_and_the_admin_the_operators(
    monkeypatch, tmp_path
):
    """The config as JupyterHub loads it: the proxy on 127.0.0.1, the operator's authenticator
    (the admin from a password file; login pages for the host alone), the single-user server,
    a volume per learner named by this hub, removed containers, the idle culler."""
    config = load_config(monkeypatch, tmp_path, DLLAB_HUB_PORT="8123", DLLAB_HUB_IP="172.30.0.1",
                         DLLAB_HUB_ADMIN_PASSWORD_FILE=str(tmp_path / "admin-password"))  # fmt: skip
    assert config.JupyterHub.bind_url == "http://127.0.0.1:8123"
    assert config.JupyterHub.hub_bind_url.startswith("http://172.30.0.1:")
    assert config.JupyterHub.authenticator_class == "dllab.hubauth.ClassAuthenticator"
    auth = config.ClassAuthenticator
    assert auth.admin_password_file == str(tmp_path / "admin-password")
    assert set(auth.host_addresses) == {"127.0.0.1", "::1", "172.30.0.1"}
    assert "127.0.0.1:8123" in auth.host_names and config.Authenticator.admin_users == {"teacher"}
    assert config.DockerSpawner.cmd == ["jupyterhub-singleuser"]
    volume = {"bind": "/work", "mode": "rw,nocopy"}  # never the image's /work copied over it
    assert config.DockerSpawner.volumes == {f"{hub.name()}-work-{{username}}": volume}
    assert config.DockerSpawner.name_template == f"{hub.name()}-{{username}}"
    assert config.DockerSpawner.remove is True
    assert any(s["name"] == "idle-culler" for s in config.JupyterHub.services)


def test_a_learners_container_gets_dllabs_rules_and_a_uid_of_their_own():
    """Learners' containers take hardening, shared memory and labels from containers.Spec, run
    as their own UID (no host account has it), and get a GPU through the registry's rule."""
    spec = containers.Spec(containers.variants.get("cuda"), "101234:101234", hub.labels(), ("1",))
    host, create = spec.host_config(), spec.create_kwargs()
    assert host["cap_drop"] == ["ALL"] and host["security_opt"] == ["no-new-privileges"]
    assert host["shm_size"] == containers.SHM_SIZE and host["pids_limit"] == containers.PIDS_LIMIT
    assert host["device_requests"] == [{"device_ids": ["1"], "capabilities": [["gpu"]]}]
    assert create["user"] == "101234:101234" and create["labels"]["dllab.hub"] == hub.name()
    ids = accounts.hub_ids(hub.name())
    assert len(ids) == accounts.HUB_BLOCK and ids.start >= accounts.HUB.start
