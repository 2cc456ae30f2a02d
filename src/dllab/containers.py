"""Every Docker command dllab runs, as argument lists built from the registry, and every engine check."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shlex
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dllab import locks, variants
from dllab.errors import UserError
from dllab.variants import ROOT, Variant

DOCKERFILE = ROOT / "docker" / "Dockerfile"
WHEELHOUSE = ROOT / "wheelhouse"
CONTAINER_PORT = 8888
USERS_GID = 100  # group "users" in the image: it may write the venv (`pip install`)
# Whatever a container runs as, it gets no capabilities and cannot gain privileges.
HARDENING = ("--cap-drop", "ALL", "--security-opt", "no-new-privileges")


def quote(cmd: list[str]) -> str:
    return shlex.join(cmd)


def state_dir() -> Path:
    """Where tasks keep what they must remember (built image IDs, running labs): DLLAB_STATE."""
    return Path(os.environ.get("DLLAB_STATE") or ROOT / ".dllab")


def checkout_id() -> str:
    """A short, stable name for this checkout, so two clones never act on each other's things."""
    return hashlib.sha256(str(ROOT.resolve()).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Owner:
    """Who a container belongs to: the user it runs as, and this checkout."""

    uid: int
    gid: int

    @classmethod
    def current(cls) -> Owner:
        """You; under sudo, the user who ran sudo; plain root gets 1000:1000 (never root)."""
        if os.getuid():
            return cls(os.getuid(), os.getgid())
        sudo = os.environ.get("SUDO_UID", ""), os.environ.get("SUDO_GID", "")
        if all(v.isdigit() for v in sudo) and int(sudo[0]):
            return cls(int(sudo[0]), int(sudo[1]))
        return cls(1000, 1000)

    @property
    def user(self) -> str:
        return f"{self.uid}:{self.gid}"

    def labels(self) -> list[str]:
        return ["--label", f"dllab.owner={self.uid}", "--label", f"dllab.checkout={checkout_id()}"]

    def filters(self) -> list[str]:
        return ["--filter", f"label=dllab.owner={self.uid}",
                "--filter", f"label=dllab.checkout={checkout_id()}"]  # fmt: skip


def container_name(variant: Variant, owner: Owner, role: str = "lab") -> str:
    """dllab-lab-cpu-1000-1a2b3c4d: per variant, user and checkout; DLLAB_INSTANCE adds a suffix
    (tests use it, so they never collide with the lab you are running)."""
    instance = os.environ.get("DLLAB_INSTANCE", "")
    return "-".join(
        filter(None, ("dllab", role, variant.name, str(owner.uid), checkout_id(), instance))
    )


def bind(source: Path, target: str, readonly: bool = False) -> list[str]:
    """`--mount` for a host folder, CSV-quoted: any path (spaces, quotes, commas, colons) is literal."""
    fields = ["type=bind", f"source={source.resolve()}", f"target={target}"]
    if readonly:
        fields.append("readonly")
    line = io.StringIO()
    csv.writer(line, quoting=csv.QUOTE_MINIMAL, lineterminator="").writerow(fields)
    return ["--mount", line.getvalue()]


def wheelhouse(variant: Variant, platform: str) -> Path:
    """Where `invoke wheelhouse` puts the wheels of one lock (a folder the Dockerfile looks in)."""
    return WHEELHOUSE / f"{variant.name}-{platform}"


def wheels_image(variant: Variant, platform: str) -> str:
    """The image `invoke wheelhouse` makes of those wheels; offline builds copy from it.
    dllab-wheels, or <DLLAB_IMAGE_NAME>-wheels: a second tree's locks have wheels of their own."""
    return f"{variants.image_name()}-wheels:{variant.name}-{platform}"


WHEELS_LOCK_LABEL = "dllab.wheels-of"  # the digest of the locks a wheels image holds


def wheel_locks(variant: Variant, platform: str) -> list[Path]:
    """The locks whose wheels an offline build needs: the variant's, and the SBOM tools'."""
    return [variant.lock(platform), locks.SBOM.lock(platform)]


def wheels_lock_digest(variant: Variant, platform: str) -> str:
    """The digest of those locks' whole text: a wheels image labelled with it is up to date."""
    return locks.content_digest(
        "".join(lock.read_text() for lock in wheel_locks(variant, platform))
    )


def wheels_image_command(variant: Variant, platform: str) -> list[str]:
    docker_platform = variants.PLATFORMS[platform].docker
    # Marked as the build it feeds: an arm64 build copies from an arm64 image.
    marked = ["--platform", docker_platform] if docker_platform else []
    return [
        "docker", "build", "--network", "none", "--quiet", *marked,
        "--label", f"{WHEELS_LOCK_LABEL}={wheels_lock_digest(variant, platform)}",
        "--tag", wheels_image(variant, platform),
        "--file", str(ROOT / "docker" / "wheelhouse.Dockerfile"), str(wheelhouse(variant, platform)),
    ]  # fmt: skip


def image_tag(variant: Variant, platform: str, host: str | None = None) -> str:
    """dllab:cpu for the platform this machine's Docker runs natively; dllab:cpu-linux-aarch64 for
    another, so an emulated build never replaces the image you use."""
    if platform == variants.engine_platform(host):
        return variant.image
    return f"{variant.image}-{platform}"


def run_platform(platform: str | None, host: str | None = None) -> list[str]:
    """`--platform` for `docker run` of another platform's image (none for the engine's own)."""
    if not platform or platform == variants.engine_platform(host):
        return []
    return ["--platform", variants.PLATFORMS[platform].docker or platform]


def image_ids_file(variant: Variant, platform: str, revision: str) -> Path:
    """Where a build records the ID of the image it made: `invoke clean` removes only those."""
    return state_dir() / "images" / f"{variant.name}-{platform}-{revision}.id"


def build_command(
    variant: Variant,
    platform: str,
    revision: str,
    offline: bool = False,
    dockerfile: Path = DOCKERFILE,
    context: Path = ROOT,
    tags: tuple[str, ...] | None = None,
) -> list[str]:
    """`docker build` for one variant: its target stage, lock, torch index, labels and tags."""
    cmd = ["docker", "build", "--file", str(dockerfile), "--target", variant.name]
    for arg, value in (
        ("VARIANT", variant.name),
        ("PLATFORM", platform),
        ("TORCH_INDEX", variants.torch_index(variant)),
        ("REVISION", revision),
        ("LOCK_DIGEST", locks.digest(variant, platform)),
        *([("WHEELHOUSE", wheels_image(variant, platform))] if offline else []),
        # Another base image (CI's local arm64 debootstrap): DLLAB_BASE.
        *([("BASE", os.environ["DLLAB_BASE"])] if os.environ.get("DLLAB_BASE") else []),
    ):
        cmd += ["--build-arg", f"{arg}={value}"]
    docker_platform = variants.PLATFORMS[platform].docker
    if docker_platform:
        cmd += ["--platform", docker_platform]
    if offline:
        cmd += ["--network", "none"]
    # CI builds the arm64 image under emulation beside the x86 tests, at a low CPU weight so it
    # takes only what they leave idle (`docker build --cpu-shares`, a legacy-builder option).
    if os.environ.get("DLLAB_BUILD_CPU_SHARES"):
        cmd += ["--cpu-shares", os.environ["DLLAB_BUILD_CPU_SHARES"]]
    if tags is None:
        tag = image_tag(variant, platform)
        tags = (tag, f"{tag}-{revision}")
        cmd += ["--iidfile", str(image_ids_file(variant, platform, revision))]
    for tag in tags:
        cmd += ["--tag", tag]
    return [*cmd, str(context)]


def run_command(
    variant: Variant,
    command: list[str],
    owner: Owner | None = None,
    gpus: bool = False,
    options: list[str] | None = None,
    image: str | None = None,
    platform: str | None = None,
) -> list[str]:
    """`docker run --rm` of `command` in the variant's image (its `platform` build, if given),
    hardened, as `owner` if given."""
    cmd = ["docker", "run", "--rm", *HARDENING, "--shm-size", "2g", *run_platform(platform)]
    if platform and not image:
        image = image_tag(variant, platform)
    if owner:
        cmd += ["--user", owner.user, "--group-add", str(USERS_GID), *owner.labels()]
    if gpus:
        cmd += list(variant.gpu_args)
    return [*cmd, *(options or []), image or variant.image, *command]


def lab_command(
    variant: Variant,
    port: int,
    work: Path,
    owner: Owner,
    name: str,
    gpus: bool,
    platform: str | None = None,
) -> list[str]:
    """`docker run` for JupyterLab: 127.0.0.1 only, as `owner`, token taken from the environment."""
    cmd = [
        "docker", "run", "--detach", "--name", name, *owner.labels(),
        "--user", owner.user, "--group-add", str(USERS_GID), *HARDENING,
        "--publish", f"127.0.0.1:{port}:{CONTAINER_PORT}",
        # Only the variable's name: docker reads its value from its own environment, so the
        # token never appears in any process's argv.
        "--env", "JUPYTER_TOKEN",
        *bind(work, "/work"),
        # PyTorch DataLoader workers share tensors through /dev/shm; Docker's default is 64 MB.
        "--shm-size", "2g",
    ]  # fmt: skip
    if gpus:
        cmd += list(variant.gpu_args)
    if platform:
        return [*cmd, *run_platform(platform), image_tag(variant, platform)]
    return [*cmd, variant.image]


def health_probe(name: str, healthcheck: list[str]) -> list[str]:
    """`docker exec` of a container's HEALTHCHECK test (["CMD", ...] or ["CMD-SHELL", "..."])."""
    kind, *args = healthcheck
    if kind == "CMD-SHELL":
        args = ["/bin/sh", "-c", *args]
    return ["docker", "exec", name, *args]


# --- engine checks: an argument list run by a Runner, so tests pass their own --------------------

Runner = Callable[[list[str]], tuple[int, str]]  # runs a command: (exit code, stdout)

NO_DOCKER = (
    "docker is not installed: install Docker (Docker Desktop, or your Linux distribution's "
    "docker.io; CI: .ci/engine), then run this again"
)
NO_ENGINE = (
    "no Docker engine answers: start Docker (Docker Desktop, or `sudo systemctl start docker`; "
    "CI: .ci/engine), then run this again"
)


def capture(cmd: list[str]) -> tuple[int, str]:
    """The Runner outside invoke: `cmd` with its output captured; 127 (as a shell says) if missing."""
    try:
        result = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
        return 127, ""
    return result.returncode, result.stdout


def check_engine(run: Runner = capture) -> dict:
    """The engine's `docker info`, or a UserError saying how to get an engine that answers."""
    code, out = run(["docker", "info", "--format", "{{json .}}"])
    if code == 127:
        raise UserError(NO_DOCKER)
    try:
        info = json.loads(out or "{}")  # `invoke --dry` runs nothing, so reads nothing
    except ValueError:
        raise UserError(NO_ENGINE) from None
    # With --format, `docker info` exits 0 where no engine answers (docker/cli#5900): its JSON
    # names the failure under ServerErrors.
    if code or not isinstance(info, dict) or info.get("ServerErrors"):
        raise UserError(NO_ENGINE)
    return info


def engine_answers(run: Runner = capture) -> bool:
    """Whether `check_engine` passes (for clean-ups that have nothing to do without an engine)."""
    try:
        check_engine(run)
    except UserError:
        return False
    return True


def gpu_runtime(info: dict, variant: Variant) -> bool:
    """Whether the engine (`info`: its `docker info`) has the runtime that gives `variant` its GPU."""
    return bool(variant.gpu_runtime) and variant.gpu_runtime in (info.get("Runtimes") or {})


def image_exists(image: str, run: Runner = capture) -> bool:
    return run(["docker", "image", "inspect", image])[0] == 0


def check_image(
    variant: Variant, platform: str | None = None, image: str | None = None, run: Runner = capture
) -> None:
    """A UserError naming the `invoke build` to run where the image is missing: `image`, else the
    variant's (its `platform` build, if given)."""
    image = image or (image_tag(variant, platform) if platform else variant.image)
    if not image_exists(image, run):
        other = platform and platform != variants.engine_platform()
        also = f" --platform {platform}" if other else ""
        raise UserError(
            f"image {image} is missing: build it with `invoke build --variant {variant.name}{also}`"
        )


# --- ports on this machine ----------------------------------------------------------------------


def port_number(value: int | str, what: str = "--port") -> int:
    """`value` as a port the caller may listen on: 1024-65535 (1-65535 for root), else a UserError."""
    text = str(value).strip()
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UserError(f"{what} must be a port number from 1024 to 65535, not {value!r}")
    port = int(text)
    if port < 1024 and os.getuid() != 0:
        raise UserError(f"{what} {port} is a privileged port (below 1024): choose one from 1024 up")
    return port


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        # As servers bind (Docker's proxy, Node, Jupyter): a port whose last connections are
        # only in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(start: int, tries: int = 20) -> int | None:
    """The first free port from `start` on, or None."""
    return next((p for p in range(start, min(start + tries, 65536)) if port_free(p)), None)


def any_free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` now, as the system picks one."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# --- provenance: the venv tree label, verify, the SBOM, bundles (dllab.provenance, dllab.bundle) --

LABEL_DOCKERFILE = ROOT / "docker" / "label.Dockerfile"


def label_command(
    image_id: str, venv_tree: str, tags: list[str], iidfile: Path, context: Path, platform: str
) -> list[str]:
    """`docker build` of docker/label.Dockerfile: the image `image_id` labelled dllab.venv-tree,
    with no new layer, tagged as the build's tags."""
    docker_platform = variants.PLATFORMS[platform].docker
    cmd = [
        "docker", "build", "--quiet", "--network", "none", "--file", str(LABEL_DOCKERFILE),
        "--build-arg", f"IMAGE={image_id}", "--build-arg", f"VENV_TREE={venv_tree}",
        "--iidfile", str(iidfile),
        *(["--platform", docker_platform] if docker_platform else []),
    ]  # fmt: skip
    for tag in tags:
        cmd += ["--tag", tag]
    return [*cmd, str(context)]


def inspect_command(image: str, template: str) -> list[str]:
    """`docker image inspect` of one Go-template value of `image` (its ID, a label, its size)."""
    return ["docker", "image", "inspect", "--format", template, image]


def label_template(name: str) -> str:
    return '{{index .Config.Labels "' + name + '"}}'


def in_image_command(image: str, program: list[str], platform: str | None = None) -> list[str]:
    """`docker run` of `program` in `image` for what it holds, never for what it serves: no
    network, its entrypoint bypassed, stdin open (a script may come that way), hardened."""
    entrypoint, *args = program
    return [
        "docker", "run", "--rm", "--interactive", "--network", "none", *HARDENING,
        *Owner.current().labels(), *run_platform(platform), "--entrypoint", entrypoint, image, *args,
    ]  # fmt: skip


def save_command(image: str) -> list[str]:
    """`docker save` of `image` to stdout."""
    return ["docker", "save", image]


def load_command() -> list[str]:
    """`docker load` of an image archive on stdin (docker save's, gzip-compressed or not)."""
    return ["docker", "load"]


def images_command() -> list[str]:
    """Every image ID the engine holds, intermediate ones included."""
    return ["docker", "image", "ls", "--all", "--quiet", "--no-trunc"]
