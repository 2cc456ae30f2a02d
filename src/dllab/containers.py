"""Every Docker command dllab runs, as argument lists built from the registry."""

from __future__ import annotations

import shlex
import socket
from pathlib import Path

from dllab import locks, variants
from dllab.variants import ROOT, Variant

DOCKERFILE = ROOT / "docker" / "Dockerfile"
WHEELHOUSE = ROOT / "wheelhouse"
CONTAINER_PORT = 8888


def quote(cmd: list[str]) -> str:
    return shlex.join(cmd)


def wheelhouse(variant: Variant, platform: str) -> Path:
    """Where `invoke wheelhouse` puts the wheels of one lock (a folder the Dockerfile looks in)."""
    return WHEELHOUSE / f"{variant.name}-{platform}"


def wheels_image(variant: Variant, platform: str) -> str:
    """The image `invoke wheelhouse` makes of those wheels; offline builds copy from it."""
    return f"dllab-wheels:{variant.name}-{platform}"


def wheels_image_command(variant: Variant, platform: str) -> list[str]:
    return [
        "docker", "build", "--network", "none", "--quiet", "--tag", wheels_image(variant, platform),
        "--file", str(ROOT / "docker" / "wheelhouse.Dockerfile"), str(wheelhouse(variant, platform)),
    ]  # fmt: skip


def build_command(
    variant: Variant, platform: str, revision: str, offline: bool = False
) -> list[str]:
    """`docker build` for one variant: its target stage, lock, torch index and labels."""
    cmd = ["docker", "build", "--file", str(DOCKERFILE), "--target", variant.name]
    for arg, value in (
        ("VARIANT", variant.name),
        ("PLATFORM", platform),
        ("TORCH_INDEX", variants.torch_index(variant)),
        ("REVISION", revision),
        ("LOCK_DIGEST", locks.digest(variant, platform)),
        *([("WHEELHOUSE", wheels_image(variant, platform))] if offline else []),
    ):
        cmd += ["--build-arg", f"{arg}={value}"]
    docker_platform = variants.PLATFORMS[platform].docker
    if docker_platform:
        cmd += ["--platform", docker_platform]
    if offline:
        cmd += ["--network", "none"]
    cmd += ["--tag", variant.image, "--tag", f"{variant.image}-{revision}", str(ROOT)]
    return cmd


def container_name(variant: Variant) -> str:
    return f"dllab-lab-{variant.name}"


def lab_command(
    variant: Variant,
    port: int,
    work: Path,
    token: str,
    uid: int,
    gid: int,
    gpus: bool,
) -> list[str]:
    """`docker run` for JupyterLab: published on 127.0.0.1 only, token on, work mounted, host UID."""
    cmd = [
        "docker", "run", "--detach", "--name", container_name(variant),
        "--publish", f"127.0.0.1:{port}:{CONTAINER_PORT}",
        # Start as root only to remap the lab user to the host user; dllab-start drops root.
        "--user", "root", "--env", f"DLLAB_UID={uid}", "--env", f"DLLAB_GID={gid}",
        "--env", f"JUPYTER_TOKEN={token}",
        "--volume", f"{work.resolve()}:/work",
        # PyTorch DataLoader workers share tensors through /dev/shm; Docker's default is 64 MB.
        "--shm-size", "2g",
    ]  # fmt: skip
    if gpus:
        cmd += ["--gpus", "all"]
    return [*cmd, variant.image]


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(start: int, tries: int = 20) -> int | None:
    """The first free port from `start` on, or None."""
    return next((p for p in range(start, start + tries) if port_free(p)), None)
