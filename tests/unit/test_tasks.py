"""tasks.py: the commands each task runs (invoke's MockContext), and its one-line errors."""

from __future__ import annotations

import ast
import csv
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from invoke import Exit, MockContext, Result

import tasks
from dllab import accounts, containers, environments, native, variants
from dllab import lab as labs
from dllab.containers import Owner


@pytest.fixture(autouse=True)
def private_state(monkeypatch, tmp_path):
    """Tasks remember labs and built images in DLLAB_STATE: a temporary one per test."""
    monkeypatch.setenv("DLLAB_STATE", str(tmp_path / "state"))
    monkeypatch.setattr(labs.time, "sleep", lambda s: None)
    monkeypatch.delenv("DLLAB_TASKS_PROGRAM", raising=False)  # hints read as `invoke ...`
    monkeypatch.delenv("DLLAB_INSTANCE", raising=False)
    for desktop in ("DISPLAY", "WAYLAND_DISPLAY"):  # no real browser opens during the tests
        monkeypatch.delenv(desktop, raising=False)
    # These tests read as on an x86_64 Linux host, wherever they run (test_platforms.py fakes others).
    monkeypatch.setattr(variants, "host_platform", lambda: "linux-x86_64")


# `docker info --format '{{json .}}'` of an engine that answers, without the NVIDIA runtime.
ENGINE = {
    re.compile("docker info .*"): Result(
        stdout=json.dumps({"ServerVersion": "24.0.0", "Runtimes": {"runc": {}}})
    )
}


def ctx(**results):
    """A MockContext where `docker info` answers and any other command succeeds."""
    return MockContext(
        run={**ENGINE, re.compile(".*"): Result(stdout="24.0.0")}, repeat=True, **results
    )


def commands(c):
    return [call.args[0] for call in c.run.call_args_list]


def test_build_cuda_runs_one_docker_build_with_the_variant_target_lock_and_labels():
    """invoke build --variant cuda: target cuda, VARIANT/PLATFORM/LOCK_DIGEST args, both tags."""
    c = ctx()
    tasks.build(c, variant="cuda")
    [build] = [cmd for cmd in commands(c) if cmd.startswith("docker build")]
    assert "--target cuda" in build and "--build-arg VARIANT=cuda" in build
    assert (
        "--build-arg PLATFORM=linux-x86_64" in build and "--build-arg LOCK_DIGEST=sha256:" in build
    )
    assert "--tag dllab:cuda" in build and "--network none" not in build


def test_offline_build_without_a_wheelhouse_says_which_task_fills_it():
    """--offline with no wheels image names `invoke wheelhouse --variant cpu`."""
    c = MockContext(
        run={
            **ENGINE,
            re.compile("docker image inspect dllab-wheels.*"): Result(exited=1),
            re.compile(".*"): Result(stdout="ok"),
        },
        repeat=True,
    )
    with pytest.raises(Exit, match="run `invoke wheelhouse --variant cpu` first"):
        tasks.build(c, variant="cpu", offline=True)


def test_offline_build_copies_wheels_from_their_image_with_no_network():
    """--offline passes the wheels image as WHEELHOUSE and builds with --network none."""
    c = ctx()
    tasks.build(c, variant="cpu", offline=True)
    [build] = [cmd for cmd in commands(c) if cmd.startswith("docker build")]
    assert (
        "--build-arg WHEELHOUSE=dllab-wheels:cpu-linux-x86_64" in build
        and "--network none" in build
    )


@pytest.mark.parametrize("task", [tasks.build, tasks.lab, tasks.test, tasks.clean])
def test_unknown_variant_exits_2_listing_valid_ones(task):
    """--variant gpu stops every task before any command, naming cpu, cuda, metal."""
    c = ctx()
    with pytest.raises(Exit, match="unknown variant 'gpu': choose one of cpu, cuda, metal") as info:
        task(c, variant="gpu")
    assert info.value.code == 2 and commands(c) == []


def test_metal_on_linux_exits_2_before_running_anything(monkeypatch):
    """invoke build --variant metal on Linux: one line, no command run."""
    monkeypatch.setattr(variants, "host_platform", lambda: "linux-x86_64")
    c = ctx()
    with pytest.raises(Exit, match="metal is native macOS arm64 only"):
        tasks.build(c, variant="metal")
    assert commands(c) == []


def test_no_engine_says_how_to_start_one():
    """When `docker info` fails, build says to start Docker, and builds nothing."""
    c = MockContext(run={re.compile("docker info.*"): Result(exited=1)}, repeat=True)
    with pytest.raises(Exit, match="no Docker engine answers: start Docker"):
        tasks.build(c, variant="cpu")


def test_cuda_lab_without_nvidia_runtime_says_install_the_toolkit():
    """invoke lab --variant cuda on an engine without the nvidia runtime: the fix, not a crash."""
    c = MockContext(run={**ENGINE, re.compile(".*"): Result(stdout="ok")}, repeat=True)
    with pytest.raises(Exit, match="NVIDIA Container Toolkit"):
        tasks.lab(c, variant="cuda")


def lab_ctx(engine=ENGINE):
    """A MockContext where `engine` answers, no lab of ours exists yet and every other command
    succeeds."""
    return MockContext(
        run={
            **engine,
            re.compile("docker container inspect.*"): Result(exited=1),
            re.compile(
                r"docker inspect --format '\{\{json .Config.Healthcheck.Test\}\}'.*"
            ): Result(stdout='["CMD", "/usr/local/bin/dllab-health"]'),
            re.compile(".*"): Result(stdout="ok"),
        },
        repeat=True,
    )


def test_cuda_lab_on_an_engine_with_the_nvidia_runtime_gets_the_gpus(tmp_path):
    """The runtime is read from the engine check's one `docker info`, an argument list."""
    answer = {"ServerVersion": "24.0.0", "Runtimes": {"runc": {}, "nvidia": {}}}
    c = lab_ctx({re.compile("docker info .*"): Result(stdout=json.dumps(answer))})
    tasks.lab(c, variant="cuda", port=18888, work=str(tmp_path / "work"))
    assert shlex.split(commands(c)[0]) == ["docker", "info", "--format", "{{json .}}"]
    [run] = [cmd for cmd in commands(c) if cmd.startswith("docker run")]
    assert "--gpus all" in run


def test_lab_runs_as_you_hardened_on_loopback_with_the_token_in_a_private_file(tmp_path):
    """The lab container: 127.0.0.1 only, your UID:GID, no capabilities; the token is in a 0600
    file mounted read-only: on no command line and in no environment `docker exec` inherits."""
    c = lab_ctx()
    tasks.lab(c, variant="cpu", port=18888, work=str(tmp_path / "work"))
    [run] = [call for call in c.run.call_args_list if call.args[0].startswith("docker run")]
    cmd = run.args[0]
    assert "--publish 127.0.0.1:18888:8888" in cmd
    owner = Owner.current()
    assert f"--user {owner.uid}:{owner.gid}" in cmd and "--group-add 100" in cmd
    assert "--cap-drop ALL --security-opt no-new-privileges --pids-limit" in cmd
    token_file = (
        containers.state_dir() / f"{containers.container_name(variants.get('cpu'), owner)}.token"
    )
    token = token_file.read_text().strip()
    assert len(token) >= 32 and token not in cmd and "JUPYTER_TOKEN" not in cmd
    assert token_file.stat().st_mode & 0o777 == 0o600 and not run.kwargs.get("env")
    assert f"source={token_file},target=/run/dllab/token,readonly" in cmd
    assert f"source={tmp_path / 'work'},target=/work" in cmd and "--gpus" not in cmd
    assert "--user root" not in cmd and "DLLAB_UID" not in cmd


def test_lab_waits_on_the_images_own_healthcheck(tmp_path):
    """Readiness is the HEALTHCHECK's test run with docker exec, not a loop of its own."""
    c = lab_ctx()
    tasks.lab(c, variant="cpu", port=18888, work=str(tmp_path / "work"))
    name = containers.container_name(variants.get("cpu"), Owner.current())
    assert f"docker exec {name} /usr/local/bin/dllab-health" in commands(c)


@pytest.mark.parametrize(
    "work",
    ["my work", 'it\'s "quoted"', "w;touch INJECTED", "$(touch INJECTED)", "-leading", "a,b:c"],
)
def test_work_dirs_with_shell_characters_are_used_literally(tmp_path, work, monkeypatch):
    """--work with spaces, quotes, ;, $( ), a leading - or , : is one literal path, no shell."""
    monkeypatch.chdir(tmp_path)
    c = lab_ctx()
    tasks.lab(c, variant="cpu", port=18888, work=work)
    path = tmp_path / work
    assert (
        path.is_dir()
        and path.stat().st_mode & 0o777 == 0o700
        and len(list(tmp_path.iterdir())) == 2
    )
    [run] = [shlex.split(cmd) for cmd in commands(c) if cmd.startswith("docker run")]
    mounts = [next(csv.reader([run[i + 1]])) for i, arg in enumerate(run) if arg == "--mount"]
    assert ["type=bind", f"source={path}", "target=/work"] in mounts


def test_an_existing_work_dir_the_lab_user_cannot_write_is_refused(tmp_path, monkeypatch):
    """A work folder owned by someone else: one line, exit 2, and no chown of it."""
    work = tmp_path / "theirs"
    work.mkdir(mode=0o755)
    monkeypatch.setattr(Owner, "current", classmethod(lambda cls: cls(4242, 4242)))
    c = lab_ctx()
    with pytest.raises(Exit, match="cannot write") as info:
        tasks.lab(c, variant="cpu", work=str(work))
    assert info.value.code == 2 and not any("chown" in cmd for cmd in commands(c))


def test_under_sudo_the_lab_runs_as_the_user_who_ran_sudo_and_plain_root_as_no_account(monkeypatch):
    """Root with SUDO_UID/SUDO_GID: the lab user is that user; plain root: an ID no account of
    this host has (never root, never UID 1000, a real account here)."""
    monkeypatch.setattr(containers.os, "getuid", lambda: 0)
    monkeypatch.setenv("SUDO_UID", "1234")
    monkeypatch.setenv("SUDO_GID", "2345")
    assert Owner.current() == Owner(1234, 2345)
    monkeypatch.setenv("SUDO_UID", "0")
    plain = Owner.current()
    assert plain.uid == plain.gid and plain.uid in accounts.ROOT_LAB and plain.borrowed
    assert not accounts.is_account(plain.uid)


@pytest.mark.parametrize("port", ["abc", "-1", "70000", "0", "80", "1.5"])
def test_bad_ports_are_one_line_and_exit_2(port, monkeypatch):
    """--port abc|-1|70000|0 is not a port; 80 is privileged for a non-root user."""
    monkeypatch.setattr(containers.os, "getuid", lambda: 1000)
    c = lab_ctx()
    with pytest.raises(
        Exit, match="privileged" if port == "80" else "must be a port number"
    ) as info:
        tasks.lab(c, variant="cpu", port=port)
    assert info.value.code == 2 and commands(c) == []


def test_a_second_lab_of_yours_reprints_its_url_and_stop_is_graceful(tmp_path):
    """A running lab is shown again, not started twice; --stop is docker stop, not rm --force."""
    c = lab_ctx()
    tasks.lab(c, variant="cpu", port=18888, work=str(tmp_path / "work"))
    running = MockContext(
        run={**ENGINE, re.compile("docker container inspect.*"): Result(stdout="true"),
             re.compile(".*"): Result(stdout="ok")},
        repeat=True,
    )  # fmt: skip
    tasks.lab(running, variant="cpu", work=str(tmp_path / "work"))
    assert not any(cmd.startswith("docker run") for cmd in commands(running))
    tasks.lab(running, variant="cpu", stop=True)
    assert any(cmd.startswith("docker stop -t 20") for cmd in commands(running))
    assert not any("rm --force" in cmd for cmd in commands(running))


def test_a_running_lab_asked_for_another_work_folder_says_stop_it_first(tmp_path):
    """`invoke lab --work OTHER` while a lab runs: the lab's folder, and the exact stop command."""
    tasks.lab(lab_ctx(), variant="cpu", port=18888, work=str(tmp_path / "work"))
    running = MockContext(
        run={**ENGINE, re.compile("docker container inspect.*"): Result(stdout="true"),
             re.compile(".*"): Result(stdout="ok")},
        repeat=True,
    )  # fmt: skip
    with pytest.raises(Exit) as info:
        tasks.lab(running, variant="cpu", work=str(tmp_path / "other"))
    assert info.value.code == 2 and str(info.value.message) == (
        f"dllab: your cpu lab runs with --work {tmp_path / 'work'}, not {tmp_path / 'other'}: "
        "stop it first: invoke lab --stop --variant cpu"
    )
    assert not (tmp_path / "other").exists()


def test_container_names_are_per_user_checkout_and_instance(monkeypatch):
    """Two users, or a test beside your lab (DLLAB_INSTANCE), never share a container name."""
    cpu = variants.get("cpu")
    mine = containers.container_name(cpu, Owner(1000, 1000))
    theirs = containers.container_name(cpu, Owner(1001, 1001))
    monkeypatch.setenv("DLLAB_INSTANCE", "test123")
    test = containers.container_name(cpu, Owner(1000, 1000))
    assert len({mine, theirs, test}) == 3 and containers.checkout_id() in mine


def test_clean_removes_only_tags_of_images_this_checkout_built(tmp_path):
    """An image built FROM dllab:cpu, a commit, or another checkout's build is never removed."""
    state = tmp_path / "state" / "images"
    state.mkdir(parents=True)
    (state / "cpu-linux-x86_64-abc1234.id").write_text("sha256:ours\n")
    listing = (
        "dllab:cpu sha256:ours\ndllab:cpu-abc1234 sha256:ours\ndllab:cpu-mine sha256:derived\n"
    )
    c = MockContext(
        run={**ENGINE, re.compile("docker image ls.*"): Result(stdout=listing),
             re.compile(".*"): Result(stdout="")},
        repeat=True,
    )  # fmt: skip
    tasks.clean(c, variant="cpu")
    removed = [cmd for cmd in commands(c) if cmd.startswith("docker rmi")]
    assert removed == ["docker rmi dllab:cpu", "docker rmi dllab:cpu-abc1234"]
    assert not any("--force" in cmd for cmd in commands(c))
    listed = [cmd for cmd in commands(c) if cmd.startswith(("docker ps", "docker network ls"))]
    assert listed and all(
        "label=dllab.owner=" in cmd
        and "label=dllab.checkout=" in cmd
        and "label=dllab.instance=" in cmd
        for cmd in listed
    )


def test_clean_never_touches_the_work_directory():
    """invoke clean removes containers and images only: no rm of files."""
    c = ctx()
    tasks.clean(c)
    assert commands(c) and not any(
        re.search(r"\brm -r|\brm -f|\brmdir", cmd) for cmd in commands(c)
    )


def test_build_refuses_a_corrupt_lock_before_building(monkeypatch, tmp_path):
    """A lock cut short mid-hash: build names it and runs no command."""
    lock = tmp_path / "cpu-linux-x86_64.txt"
    text = variants.get("cpu").lock("linux-x86_64").read_text()
    lock.write_text(text[: len(text) // 2])
    monkeypatch.setattr(variants, "LOCKS", tmp_path)
    c = ctx()
    with pytest.raises(Exit, match="cut short or edited by hand") as info:
        tasks.build(c, variant="cpu")
    assert info.value.code == 2 and commands(c) == []


def test_doctor_without_frameworks_here_points_at_the_image(monkeypatch):
    """`invoke doctor` where no framework is installed: one line saying to ask the image."""
    monkeypatch.setattr(environments, "frameworks_here", lambda: False)
    c = ctx()
    with pytest.raises(Exit, match="they live in the image.*invoke doctor --variant cpu"):
        tasks.doctor(c)
    assert commands(c) == []


def test_dry_run_of_build_cuda_shows_the_exact_command(tmp_path):
    """`invoke --dry build --variant cuda` prints the docker build line and runs nothing."""
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "--dry", "build", "--variant", "cuda"],
        capture_output=True,
        text=True,
        cwd=variants.ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "docker build --file" in proc.stdout and "--target cuda" in proc.stdout


def test_cli_unknown_variant_is_one_line_without_traceback():
    """`invoke build --variant gpu` prints one line on stderr and exits 2."""
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "build", "--variant", "gpu"],
        capture_output=True,
        text=True,
        cwd=variants.ROOT,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "dllab: unknown variant 'gpu': choose one of cpu, cuda, metal"


def test_metal_on_a_mac_without_conda_builds_a_venv_from_the_metal_lock(monkeypatch):
    """On macOS arm64 with no conda, build makes .venv-metal from the hashed metal lock."""
    monkeypatch.setattr(variants, "host_platform", lambda: "macos-arm64")
    monkeypatch.setattr(native.shutil, "which", lambda tool: None)
    c = ctx()
    tasks.build(c, variant="metal")
    assert commands(c)[1].endswith(
        "--require-hashes --no-deps -r " + str(variants.get("metal").lock("macos-arm64"))
    )
    assert commands(c)[0].endswith("-m venv .venv-metal")


def test_metal_on_a_mac_with_mamba_uses_environment_yml_and_tests_expect_mps(monkeypatch):
    """With mamba, build updates the dllab-metal env from environment.yml; test runs inside it."""
    monkeypatch.setattr(variants, "host_platform", lambda: "macos-arm64")
    monkeypatch.setattr(
        native.shutil, "which", lambda tool: "/opt/bin/mamba" if tool == "mamba" else None
    )
    c = ctx()
    tasks.build(c, variant="metal")
    tasks.test(c, variant="metal")
    assert "mamba env update --name dllab-metal --file environment.yml" in commands(c)[0]
    assert commands(c)[-1].startswith(
        "mamba run --no-capture-output --name dllab-metal python -m pytest tests/env"
    )


def test_wheelhouse_keeps_an_image_that_already_holds_the_locks_wheels():
    """The wheels image labelled with the lock's digest is kept: no download, no rebuild (so the
    frameworks' layer of the next build stays cached)."""
    digest = containers.wheels_lock_digest(variants.get("cpu"), "linux-x86_64")
    c = MockContext(
        run={**ENGINE, re.compile("docker image inspect --format.*dllab-wheels.*"): Result(stdout=digest),
             re.compile(".*"): Result(stdout="ok")},
        repeat=True,
    )  # fmt: skip
    tasks.wheelhouse(c, variant="cpu", platform="linux-x86_64")
    assert not any("pip download" in cmd or "docker build" in cmd for cmd in commands(c))
    stale = ctx()
    tasks.wheelhouse(stale, variant="cpu", platform="linux-x86_64")
    [build] = [cmd for cmd in commands(stale) if cmd.startswith("docker build")]
    assert f"--label dllab.wheels-of={digest}" in build


def test_lab_opens_the_labs_in_a_browser_through_a_private_page(tmp_path, monkeypatch):
    """With a desktop, the browser gets a 0600 page that redirects to the URL (the token is on
    no command line); --no-browser, or no desktop, opens nothing."""
    opened = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    monkeypatch.setenv("DISPLAY", ":0")
    tasks.lab(lab_ctx(), variant="cpu", work=str(tmp_path / "work"))
    [page] = opened
    path = Path(page.removeprefix("file://"))
    assert "?token=" in path.read_text() and path.stat().st_mode & 0o077 == 0
    assert "token" not in page
    tasks.lab(lab_ctx(), variant="cpu", work=str(tmp_path / "work"), no_browser=True)
    monkeypatch.delenv("DISPLAY")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    tasks.lab(lab_ctx(), variant="cpu", work=str(tmp_path / "work"))
    assert len(opened) == 1


def test_native_commands_are_argument_lists(monkeypatch):
    """A value with spaces or shell characters reaches the native environment as one argument."""
    monkeypatch.setattr(native.shutil, "which", lambda tool: None)
    command = native.command(variants.get("metal"), ["python", "-c", "print('a b; $(x)')"])
    assert command[-3:] == [".venv-metal/bin/python", "-c", "print('a b; $(x)')"]


def test_every_command_a_task_runs_is_an_argument_list():
    """No c.run of a string written in tasks.py: each command is quote([...]) of a list."""
    tree = ast.parse(Path(tasks.__file__).read_text())
    runs = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == "c.run"]
    strings = [n for n in runs if isinstance(n.args[0], ast.Constant | ast.JoinedStr)]
    assert runs and [ast.unparse(n) for n in strings] == []


def test_the_first_run_prints_one_line_per_step_and_pip_only_when_it_fails(
    monkeypatch, tmp_path, capsys
):
    """`python3 tasks.py` in a fresh clone: two `dllab: first run:` lines (no pip output), then
    the task in the new venv; when pip fails, its output and the failed command, exit non-zero."""
    import subprocess as real

    ran, execs = [], []
    monkeypatch.setattr(tasks, "__file__", str(tmp_path / "tasks.py"))
    monkeypatch.setattr(tasks.sys, "prefix", "/usr")
    monkeypatch.delenv("DLLAB_BOOTSTRAPPED", raising=False)
    monkeypatch.setattr(tasks.os, "execv", lambda *args: execs.append(args))

    def pip(cmd, **kw):
        ran.append(cmd)
        return real.CompletedProcess(cmd, 0, "Collecting invoke\n" * 300, "")

    monkeypatch.setattr(real, "run", pip)
    tasks._bootstrap()
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0:2] for line in err] == [["dllab", " first run"]] * 2
    assert len(ran) == 2 and execs and "Collecting" not in "".join(err)

    monkeypatch.delenv("DLLAB_BOOTSTRAPPED")
    monkeypatch.setattr(real, "run", lambda cmd, **kw: real.CompletedProcess(cmd, 1, "", "ERROR: no matching distribution\n"))  # fmt: skip
    with pytest.raises(SystemExit) as failed:
        tasks._bootstrap()
    assert "ERROR: no matching distribution" in str(failed.value) and "failed" in str(failed.value)


def test_bench_with_no_framework_here_says_to_measure_the_image(monkeypatch, tmp_path):
    """`invoke bench` where no framework is installed: one line naming --variant cpu, exit 2,
    nothing run and no empty table or chart written."""
    monkeypatch.setattr(environments, "frameworks_here", lambda: False)
    c = ctx()
    with pytest.raises(Exit) as info:
        tasks.bench(c, quick=True, out=str(tmp_path / "bench"))
    assert info.value.code == 2 and "`invoke bench --variant cpu`" in str(info.value.message)
    assert commands(c) == [] and not (tmp_path / "bench").exists()


def test_an_unwritable_bench_folder_names_a_flag_bench_has(monkeypatch, tmp_path):
    """A .bench folder the lab user cannot write: the hint names --out, bench's own flag."""
    out = tmp_path / "bench"
    out.mkdir(mode=0o755)
    monkeypatch.setattr(Owner, "current", classmethod(lambda cls: cls(4242, 4242)))
    with pytest.raises(Exit) as info:
        tasks.bench(ctx(), variant="cpu", out=str(out))
    assert "choose another folder with --out" in str(info.value.message)
    assert "bench" in str(tasks.bench.help) and "out" in tasks.bench.help
