"""The devcontainers, opened with the real @devcontainers/cli against the engine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from dllab import locks, variants
from dllab.variants import ROOT
from tests.support import missing

LABEL = "dllab.test=devcontainer"


@pytest.fixture(scope="module")
def cli(client):
    path = shutil.which("devcontainer")
    if not path:
        missing(
            "devcontainer",
            "the devcontainer CLI is not installed (npm install -g @devcontainers/cli)",
        )
    return path


def env_for(client, variant: str) -> dict:
    """Offline when the variant's wheels image exists, as `invoke build --offline` is."""
    image = f"dllab-wheels:{variant}-{variants.engine_platform()}"
    env = dict(os.environ)
    if client.images.list(name=image):
        env["DLLAB_WHEELHOUSE"] = image
    return env


def devcontainer(cli, *args, env, timeout=1800) -> subprocess.CompletedProcess:
    return subprocess.run(
        [cli, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT
    )


@pytest.fixture
def cpu_devcontainer(cli, client, cpu_image):
    """`devcontainer up` on the cpu config; the container is removed afterwards."""
    config = ".devcontainer/devcontainer.json"
    env = env_for(client, "cpu")
    where = ["--workspace-folder", ".", "--config", config, "--id-label", LABEL]
    up = devcontainer(cli, "up", *where, "--remove-existing-container", env=env)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert json.loads(up.stdout.strip().splitlines()[-1])["outcome"] == "success"
        yield lambda *cmd: devcontainer(cli, "exec", *where, *cmd, env=env, timeout=600)
    finally:
        for container in client.containers.list(all=True, filters={"label": LABEL}):
            container.remove(force=True)
        remove_images(client, f"vsc-{ROOT.name}-")


def remove_images(client, prefix: str) -> None:
    """Untag what the CLI built: its layers are the variant image's, but the tags pin GBs."""
    for image in client.images.list():
        for tag in image.tags:
            if tag.startswith(prefix):
                client.images.remove(tag)


def test_cpu_devcontainer_opens_and_its_frameworks_see_and_train_on_the_cpu(cpu_devcontainer):
    """Inside the opened devcontainer: doctor --expect cpu passes and torch trains a step."""
    doctor = cpu_devcontainer("python", "-m", "dllab", "doctor", "--expect", "cpu")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "OK: every installed framework sees cpu" in doctor.stdout
    train = cpu_devcontainer("python", "-m", "dllab", "train", "keras-torch", "--expect", "cpu")
    assert train.returncode == 0, train.stdout + train.stderr
    assert json.loads(train.stdout)["failures"] == []


def test_the_devcontainer_installed_the_lock_of_the_machine_it_was_built_on(cpu_devcontainer):
    """No PLATFORM in the config: the venv holds the lock of this engine's platform
    (linux-aarch64 on an Apple-silicon Mac), named by its digest line."""
    platform = variants.engine_platform()
    lock = cpu_devcontainer("cat", "/opt/venv/dllab-lock.txt")
    assert lock.returncode == 0, lock.stderr
    assert locks.recorded(lock.stdout, locks.DIGEST_PREFIX) == locks.digest(
        variants.get("cpu"), platform
    ), f"the devcontainer did not install locks/cpu-{platform}.txt"
    assert lock.stdout == variants.get("cpu").lock(platform).read_text()


def test_the_workspace_is_installed_editable_as_the_non_root_user(cpu_devcontainer):
    """postCreateCommand installed dllab from /workspaces/dllab, and the user is lab, not root."""
    who = cpu_devcontainer(
        "bash", "-c", "whoami && python -c 'import dllab; print(dllab.__file__)'"
    )
    assert who.returncode == 0, who.stderr
    user, module = who.stdout.split()[-2:]
    assert user == "lab" and module.startswith("/workspaces/dllab/src/")


def test_cuda_devcontainer_builds_without_a_gpu(cli, client, cuda_image):
    """`devcontainer build` of the cuda config succeeds here, with no GPU (gpu: optional)."""
    tag = "dllab-devcontainer-test:cuda"
    config = ".devcontainer/cuda/devcontainer.json"
    try:
        result = devcontainer(cli, "build", "--workspace-folder", ".", "--config", config,
                              "--image-name", tag, env=env_for(client, "cuda"))  # fmt: skip
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert json.loads(result.stdout.strip().splitlines()[-1])["outcome"] == "success"
    finally:
        remove_images(client, tag)
