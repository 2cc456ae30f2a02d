"""Provenance tasks and the SBOM's inputs: one module call per task, commands as argument lists,
pip's report and dpkg's database read as the image build reads them."""

from __future__ import annotations

import hashlib
import re
import shlex
from pathlib import Path

import pytest
from invoke import Exit, MockContext, Result

import tasks
from dllab import containers, provenance, sbom, tree, variants


@pytest.fixture(autouse=True)
def private_state(monkeypatch, tmp_path):
    monkeypatch.setenv("DLLAB_STATE", str(tmp_path / "state"))
    monkeypatch.setattr(variants, "host_platform", lambda: "linux-x86_64")


def ran(c) -> list[list[str]]:
    return [shlex.split(call.args[0]) for call in c.run.call_args_list]


HASHED = "sha256:" + "0" * 64


def image(manifest: str = "", label: str = "", recorded: str = "") -> MockContext:
    """A MockContext where dllab:cpu exists and answers: its label, and the files its build
    recorded (the venv's manifest, its hash, the SBOM), and the manifest recomputed now."""
    recorded = recorded or tree.tree_hash(manifest)
    return MockContext(
        run={
            re.compile("docker info .*"): Result(stdout='{"ServerVersion": "24.0.0"}'),
            re.compile(r"docker image inspect --format .*dllab\.venv-tree.*"): Result(
                stdout=label or recorded
            ),  # fmt: skip
            re.compile(r"docker run .* /bin/cat .*venv-tree\.txt"): Result(stdout=manifest),
            re.compile(r"docker run .* /bin/cat .*venv-tree\.sha256"): Result(stdout=recorded),
            re.compile(r"docker run .* /bin/cat .*sbom\.cdx\.json"): Result(
                stdout='{"bomFormat": "CycloneDX"}'
            ),  # fmt: skip
            re.compile("git .*rev-parse.*"): Result(stdout="abc1234"),
            re.compile(".*"): Result(stdout=""),
        },
        repeat=True,
    )


MANIFEST = f'{tree.HEADER}\n100644 {"1" * 64} "lib/a.py"\n100644 {"2" * 64} "lib/b.py"\n'


def test_sbom_prints_what_the_images_build_recorded_and_nothing_else(capsys):
    """`invoke sbom > sbom.cdx.json`: stdout is the SBOM alone; the read is an argument list."""
    c = image(MANIFEST)
    tasks.sbom(c, variant="cpu")
    assert capsys.readouterr().out == '{"bomFormat": "CycloneDX"}'
    [read] = [cmd for cmd in ran(c) if cmd[:2] == ["docker", "run"]]
    assert read[-2:] == ["dllab:cpu", "/opt/dllab/provenance/sbom.cdx.json"] and "none" in read


def test_verify_passes_on_the_recorded_tree_and_names_the_first_difference(capsys, monkeypatch):
    """The recomputed manifest equals the recorded one: a line with the hash; a label that is not
    the recorded hash, or a changed file: one line, exit 2. (The recomputing script goes to the
    image on stdin, which runs outside invoke: answered here by a stand-in.)"""
    found = [MANIFEST]
    monkeypatch.setattr(provenance, "recompute", lambda run, image, platform: found[0])
    tasks.verify(image(MANIFEST), variant="cpu")
    assert f"is what its build recorded: dllab.venv-tree={tree.tree_hash(MANIFEST)}" in capsys.readouterr().out  # fmt: skip
    with pytest.raises(Exit, match="label dllab.venv-tree is sha256:0+, not its recorded"):
        tasks.verify(image(MANIFEST, label=HASHED), variant="cpu")
    found[0] = MANIFEST.replace("2" * 64, "3" * 64)
    with pytest.raises(Exit, match=r"first at /opt/venv/lib/b.py \(changed\)"):
        tasks.verify(image(MANIFEST), variant="cpu")


def test_bundle_and_load_need_their_flags_before_anything_runs():
    """No --out or --key, no --trust: one line naming the flag, exit 2, no command run."""
    for call, kwargs, flag in ((tasks.bundle, {"out": "c.dllab"}, "--key"),
                               (tasks.bundle, {"key": "k"}, "--out"),
                               (tasks.load, {"file": "c.dllab"}, "--trust")):  # fmt: skip
        c = MockContext(run=Result(), repeat=True)
        with pytest.raises(Exit, match=f"dllab: {flag} is required") as ended:
            call(c, **kwargs)
        assert ended.value.code == 2 and ran(c) == []


def test_build_labels_the_image_right_after_building_it():
    """invoke build: docker build, then the label step: the recorded hash read from the image,
    and a build of docker/label.Dockerfile FROM its ID, tagged as the build was."""
    c = image(MANIFEST)
    tasks.build(c, variant="cpu")
    commands = ran(c)
    at = next(i for i, cmd in enumerate(commands) if cmd[:2] == ["docker", "build"])
    [label] = [cmd for cmd in commands[at + 1 :] if cmd[:2] == ["docker", "build"]]
    assert str(containers.LABEL_DOCKERFILE) in label
    assert f"VENV_TREE={tree.tree_hash(MANIFEST)}" in label
    assert label[label.index("--tag") + 1] == "dllab:cpu" and "dllab:cpu-abc1234" in label


def test_in_image_commands_reach_no_network_and_bypass_the_entrypoint():
    """What verify, sbom and bundle run in an image: hardened, --network none, its own program."""
    cmd = containers.in_image_command("dllab:cpu", ["/bin/cat", "/opt/x"])
    assert cmd[:3] == ["docker", "run", "--rm"] and "--network" in cmd and "none" in cmd
    assert {"--cap-drop", "ALL", "no-new-privileges"} <= set(cmd)
    assert f"dllab.checkout={containers.checkout_id()}" in cmd  # whose it is, while it runs
    assert cmd[cmd.index("--entrypoint") + 1 :] == ["/bin/cat", "dllab:cpu", "/opt/x"]


def test_the_label_step_adds_a_label_and_no_layer_to_the_image_by_id(tmp_path):
    """docker/label.Dockerfile: FROM the built image's ID, one LABEL; the build's tags and iidfile."""
    cmd = containers.label_command(
        "sha256:" + "a" * 64, "sha256:" + "b" * 64, ["dllab:cpu", "dllab:cpu-abc"],
        tmp_path / "id", tmp_path, "linux-aarch64",
    )  # fmt: skip
    assert f"IMAGE=sha256:{'a' * 64}" in cmd and f"VENV_TREE=sha256:{'b' * 64}" in cmd
    assert cmd[cmd.index("--platform") + 1] == "linux/arm64" and cmd[-1] == str(tmp_path)
    text = containers.LABEL_DOCKERFILE.read_text()
    instructions = [line.split()[0] for line in text.splitlines() if line and line[0] != "#"]
    assert instructions == ["ARG", "FROM", "ARG", "LABEL"]


def test_pip_reports_give_each_wheels_sha256_by_package():
    """pip install --report: the sha256 of the wheel each package came from, by canonical name."""
    report = {"install": [
        {"metadata": {"name": "Jinja2"}, "download_info": {"archive_info": {"hash": "sha256=ab12"}}},
        {"metadata": {"name": "ruamel.yaml"}, "download_info": {"archive_info": {"hash": "sha256=cd"}}},
    ]}  # fmt: skip
    assert sbom.wheel_hashes(report) == {"jinja2": "ab12", "ruamel-yaml": "cd"}


def test_dpkg_status_gives_the_installed_packages_only():
    """A package removed with its configuration kept is not installed; fields are read whole."""
    status = (
        "Package: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13.dfsg-1\n"
        "Architecture: amd64\nDescription: compression\n more text\n\n"
        "Package: old\nStatus: deinstall ok config-files\nVersion: 1\nArchitecture: all\n\n"
        "Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b7\nArchitecture: amd64\n"
    )
    found = sbom.dpkg_packages(status)
    assert [(p["Package"], p["Version"], p["Architecture"]) for p in found] == [
        ("bash", "5.2.15-2+b7", "amd64"), ("zlib1g", "1:1.2.13.dfsg-1", "amd64"),
    ]  # fmt: skip
    release = sbom.os_release('ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12"\n')
    assert release["ID"] == "debian" and release["VERSION_ID"] == "12"


def test_the_wheelhouse_holds_the_sbom_tools_wheels_too(tmp_path, monkeypatch):
    """invoke wheelhouse downloads the variant's lock and the SBOM tools' (one pip each), and the
    wheels image's label covers both, so relocking the tools refreshes it."""
    monkeypatch.setattr(containers, "WHEELHOUSE", tmp_path)
    c = MockContext(
        run={
            re.compile("docker info .*"): Result(stdout='{"ServerVersion": "24.0.0"}'),
            re.compile("docker image inspect .*"): Result(stdout="sha256:older"),
            re.compile(".*"): Result(),
        },
        repeat=True,
    )
    tasks.wheelhouse(c, variant="cpu", platform="linux-aarch64")
    downloads = [cmd for cmd in ran(c) if cmd[1:4] == ["-m", "pip", "download"]]
    locks_read = [cmd[cmd.index("-r") + 1] for cmd in downloads]
    assert locks_read == [
        str(variants.get("cpu").lock("linux-aarch64")),
        str(variants.LOCKS / "tools" / "sbom-linux-aarch64.txt"),
    ]
    both = "".join(Path(path).read_text() for path in locks_read)
    assert containers.wheels_lock_digest(variants.get("cpu"), "linux-aarch64") == (
        "sha256:" + hashlib.sha256(both.encode()).hexdigest()
    )


def test_the_lock_task_passes_as_of_and_resolve_to_the_locks_module():
    """invoke lock --as-of DAY and --check --resolve: one `python -m dllab.locks` each."""
    c = MockContext(run=Result(), repeat=True)
    tasks.lock(c, variant="cpu", as_of="2026-09-01")
    tasks.lock(c, check=True, resolve=True)
    compile_, check = (cmd[1:] for cmd in ran(c))
    assert compile_ == ["-m", "dllab.locks", "compile", "--variant", "cpu", "--as-of", "2026-09-01"]
    assert check == ["-m", "dllab.locks", "check", "--resolve"]
