"""The one room that speaks Docker: every `docker` command line dllab runs is built here, from the
registry, and runs through the one Runner (dllab.runner); so do the rules every container gets
(hardening, shared memory, GPUs, names and labels), also in the Docker SDK's form for the hub's
DockerSpawner.

As repo2docker's engine seam: callers ask for a command (`lab_command`, `worker_command`, ...)
and hand it to a Runner; no other module spells `docker`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dllab import accounts, locks, variants
from dllab.errors import UserError
from dllab.runner import Runner
from dllab.variants import ROOT, Variant

DOCKER = "docker"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
WHEELHOUSE = ROOT / "wheelhouse"
CONTAINER_PORT = 8888
USERS_GID = 100  # group "users" in the image: it may write the venv (`pip install`)
# Whatever a container runs as: no capabilities, no way to gain privileges, no fork bomb.
CAP_DROP = "ALL"
SECURITY_OPT = "no-new-privileges"
PIDS_LIMIT = 4096  # frameworks start a thread pool per core: far below this on any machine
# PyTorch DataLoader workers share tensors through /dev/shm; Docker's default is 64 MB.
SHM_SIZE = "2g"
TOKEN_TARGET = "/run/dllab/token"  # where a lab finds its token (docker/dllab-start)


# --- who owns what: names and labels ---------------------------------------------------------

INSTANCE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,29}")


def state_dir() -> Path:
    """Where tasks keep what they must remember (built image IDs, running labs): DLLAB_STATE."""
    return Path(os.environ.get("DLLAB_STATE") or ROOT / ".dllab")


def checkout_id() -> str:
    """A short, stable name for this checkout, so two clones never act on each other's things."""
    return hashlib.sha256(str(ROOT.resolve()).encode()).hexdigest()[:8]


def instance() -> str:
    """DLLAB_INSTANCE (tests set it, so they never touch the lab you run), checked: it names
    containers, networks and volumes."""
    value = os.environ.get("DLLAB_INSTANCE", "")
    if value and not INSTANCE.fullmatch(value):
        raise UserError(
            f"DLLAB_INSTANCE={value!r} cannot name containers: use 1-30 lowercase letters, "
            "digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


@dataclass(frozen=True)
class Owner:
    """Who a container belongs to: the user it runs as, in this checkout and instance."""

    uid: int
    gid: int

    @classmethod
    def current(cls) -> Owner:
        """You; under sudo, the user who ran sudo; plain root, an ID no account here has (a lab
        run as root would be root's to every process it starts; as UID 1000, that user's)."""
        if os.getuid():
            return cls(os.getuid(), os.getgid())
        sudo = os.environ.get("SUDO_UID", ""), os.environ.get("SUDO_GID", "")
        if all(v.isdigit() for v in sudo) and int(sudo[0]):
            return cls(int(sudo[0]), int(sudo[1]))
        uid = accounts.free_id(accounts.ROOT_LAB)
        return cls(uid, uid)

    @property
    def user(self) -> str:
        return f"{self.uid}:{self.gid}"

    @property
    def borrowed(self) -> bool:
        """Whether plain root runs this as an ID of its own choosing (said to the user)."""
        return os.getuid() == 0 and self.uid in accounts.ROOT_LAB

    def labels(self) -> dict[str, str]:
        return {
            "dllab.owner": str(self.uid),
            "dllab.checkout": checkout_id(),
            "dllab.instance": instance(),
        }

    def filters(self, **more: str) -> list[str]:
        """`--filter`s matching what this owner made in this checkout and instance (and `more`)."""
        return [a for k, v in {**self.labels(), **more}.items() for a in ("--filter", f"label={k}={v}")]  # fmt: skip


def name(role: str, owner: Owner, *parts: str) -> str:
    """dllab-<role>-<parts>-<uid>-<checkout>[-<instance>]: per user, checkout and instance."""
    return "-".join(
        filter(None, ("dllab", role, *parts, str(owner.uid), checkout_id(), instance()))
    )


def container_name(variant: Variant, owner: Owner, role: str = "lab") -> str:
    return name(role, owner, variant.name)


def label_args(labels: Mapping[str, str]) -> list[str]:
    return [a for k, v in labels.items() for a in ("--label", f"{k}={v}")]


# --- the rules every container gets ------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """How dllab starts a container: as whom, with which labels and GPUs, hardened; rendered as
    `docker run` options, or as DockerSpawner's Docker SDK arguments for a hub's learners."""

    variant: Variant
    user: str  # UID:GID
    labels: Mapping[str, str] = field(default_factory=dict)
    gpus: Sequence[str] | None = None  # None: no GPU; (): all of the variant's; ids: those

    def args(self) -> list[str]:
        cmd = [
            "--user", self.user, "--group-add", str(USERS_GID), "--cap-drop", CAP_DROP,
            "--security-opt", SECURITY_OPT, "--pids-limit", str(PIDS_LIMIT),
            "--shm-size", SHM_SIZE, *label_args(self.labels),
        ]  # fmt: skip
        if self.gpus is not None:
            cmd += variants.gpu_args(self.variant, self.gpus or None)
        return cmd

    def host_config(self) -> dict:
        """The Docker SDK's host_config (DockerSpawner's `extra_host_config`)."""
        config: dict = {
            "group_add": [str(USERS_GID)], "cap_drop": [CAP_DROP], "security_opt": [SECURITY_OPT],
            "pids_limit": PIDS_LIMIT, "shm_size": SHM_SIZE,
        }  # fmt: skip
        if self.gpus is not None:
            config["device_requests"] = [variants.gpu_request(self.variant, self.gpus or None)]
        return config

    def create_kwargs(self) -> dict:
        """The Docker SDK's create arguments (DockerSpawner's `extra_create_kwargs`)."""
        return {"user": self.user, "labels": dict(self.labels)}


def bind(source: Path, target: str, readonly: bool = False) -> list[str]:
    """`--mount` for a host path, CSV-quoted: any path (spaces, quotes, commas, colons) is literal."""
    fields = ["type=bind", f"source={source.resolve()}", f"target={target}"]
    if readonly:
        fields.append("readonly")
    line = io.StringIO()
    csv.writer(line, quoting=csv.QUOTE_MINIMAL, lineterminator="").writerow(fields)
    return ["--mount", line.getvalue()]


# --- images ------------------------------------------------------------------------------------


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
        DOCKER, "build", "--network", "none", "--quiet", *marked,
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
    cmd = [DOCKER, "build", "--file", str(dockerfile), "--target", variant.name]
    for arg, value in (
        ("VARIANT", variant.name),
        ("PLATFORM", platform),
        ("TORCH_INDEX", variants.torch_index(variant)),
        ("REVISION", revision),
        ("LOCK_DIGEST", locks.digest(variant, platform)),
        ("LOCK_FILE", locks.file_digest(variant, platform)),
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


def image_inspect_command(image: str, template: str | None = None) -> list[str]:
    return [DOCKER, "image", "inspect", *(["--format", template] if template else []), image]


def images_command(repository: str) -> list[str]:
    """Every tag of `repository` with its full image ID: `TAG ID` lines."""
    return [
        DOCKER, "image", "ls", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}",
        repository,
    ]  # fmt: skip


def remove_image_command(tag: str) -> list[str]:
    return [DOCKER, "rmi", tag]  # never --force: an image something else uses stays


# --- containers --------------------------------------------------------------------------------


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
    hardened, as `owner` (default: you), labelled as theirs."""
    owner = owner or Owner.current()
    labels = {**owner.labels(), "dllab.role": "run", "dllab.variant": variant.name}
    spec = Spec(variant, owner.user, labels, () if gpus else None)
    if platform and not image:
        image = image_tag(variant, platform)
    return [
        DOCKER, "run", "--rm", *spec.args(), *run_platform(platform), *(options or []),
        image or variant.image, *command,
    ]  # fmt: skip


def lab_command(
    variant: Variant,
    port: int,
    work: Path,
    token_file: Path,
    owner: Owner,
    gpus: bool,
    platform: str | None = None,
    role: str = "lab",
) -> list[str]:
    """`docker run` for JupyterLab: 127.0.0.1 only, as `owner`, its token in a private file (never
    argv, never the container's environment, which every `docker exec` would inherit)."""
    labels = {**owner.labels(), "dllab.role": role, "dllab.variant": variant.name}
    spec = Spec(variant, owner.user, labels, () if gpus else None)
    return [
        DOCKER, "run", "--detach", "--name", container_name(variant, owner, role), *spec.args(),
        "--publish", f"127.0.0.1:{port}:{CONTAINER_PORT}",
        *bind(token_file, TOKEN_TARGET, readonly=True), *bind(work, "/work"),
        *run_platform(platform), image_tag(variant, platform) if platform else variant.image,
    ]  # fmt: skip


def env_args(env: Mapping[str, str]) -> list[str]:
    return [a for k, v in env.items() for a in ("--env", f"{k}={v}")]


def worker_command(
    spec: Spec,
    name: str,
    network: str,
    image: str,
    entrypoint: str,
    args: list[str],
    env: Mapping[str, str],
    sources: Sequence[tuple[Path, str]] = (),
) -> list[str]:
    """`docker run` of one training worker, on its run's network, reachable by its name."""
    return [
        DOCKER, "run", "--name", name, "--hostname", name, "--network", network, *spec.args(),
        # docker's own init as PID 1 forwards signals; the image's start script is not needed.
        "--init", "--entrypoint", entrypoint, "--workdir", "/tmp", *env_args(env),
        *(a for source, target in sources for a in bind(source, target, readonly=True)),
        image, *args,
    ]  # fmt: skip


def inspect_command(name: str, template: str) -> list[str]:
    return [DOCKER, "inspect", "--format", template, name]


def running_command(name: str) -> list[str]:
    return [DOCKER, "container", "inspect", "--format", "{{.State.Running}}", name]


def health_probe(name: str, healthcheck: list[str]) -> list[str]:
    """`docker exec` of a container's HEALTHCHECK test (["CMD", ...] or ["CMD-SHELL", "..."])."""
    kind, *args = healthcheck
    if kind == "CMD-SHELL":
        args = ["/bin/sh", "-c", *args]
    return [DOCKER, "exec", name, *args]


def logs_command(name: str, lines: int = 20) -> list[str]:
    return [DOCKER, "logs", "--tail", str(lines), name]


def stop_command(*names: str, seconds: int = 20) -> list[str]:
    """`docker stop`: SIGTERM, then SIGKILL after `seconds` (`-t`: old and new CLIs alike)."""
    return [DOCKER, "stop", "-t", str(seconds), *names]


def remove_command(*names: str, force: bool = True) -> list[str]:
    """`docker rm`; `force` kills what still runs (a stopped lab needs none)."""
    return [DOCKER, "rm", *(["--force"] if force else []), *names]


def list_command(filters: Sequence[str]) -> list[str]:
    """IDs of every container, running or not, matching `filters` (`--filter` pairs)."""
    return [DOCKER, "ps", "--all", "--quiet", *filters]


def stats_command(ids: Sequence[str]) -> list[str]:
    """Each container's name and memory use, once (`docker stats` with no ids lists them all)."""
    return [DOCKER, "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", *ids]


def finished_command(names: Sequence[str]) -> list[str]:
    return [DOCKER, "inspect", "--format", "{{.Name}} {{.State.FinishedAt}}", *names]


# --- networks and volumes ----------------------------------------------------------------------


def network_command(network: str, labels: Mapping[str, str], internal: bool = False) -> list[str]:
    """A user-defined bridge: containers on it resolve each other by name. Where the engine
    enforces it (iptables), none reaches another's directly (icc off) and, `internal`, nothing
    outside it."""
    return [
        DOCKER, "network", "create", "--driver", "bridge", *label_args(labels),
        "--opt", "com.docker.network.bridge.enable_icc=false", *(["--internal"] if internal else []),
        network,
    ]  # fmt: skip


def gateway_command(network: str) -> list[str]:
    return [DOCKER, "network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}}", network]


def networks_command(filters: Sequence[str]) -> list[str]:
    return [DOCKER, "network", "ls", "--quiet", *filters]


def remove_networks_command(*networks: str) -> list[str]:
    return [DOCKER, "network", "rm", *networks]


def volumes_command(filters: Sequence[str]) -> list[str]:
    """Each volume matching `filters`: `NAME<TAB>LEARNER` lines."""
    return [DOCKER, "volume", "ls", *filters, "--format", '{{.Name}}\t{{.Label "dllab.learner"}}']


def remove_volumes_command(*volumes: str) -> list[str]:
    return [DOCKER, "volume", "rm", *volumes]


def volume_owner_run(image: str, volume: str, uid: int) -> dict:
    """The Docker SDK's `containers.run` arguments that give a new volume to `uid` (mode 0700):
    root with only the two capabilities `install -d -o -g -m` needs, offline, on that volume."""
    return {
        "image": image, "entrypoint": "/usr/bin/install",
        "command": ["-d", "-o", str(uid), "-g", str(uid), "-m", "700", "/work"],
        "user": "0:0", "cap_drop": [CAP_DROP], "cap_add": ["CHOWN", "FOWNER"],
        "security_opt": [SECURITY_OPT], "network_mode": "none", "remove": True,
        # nocopy: not the image's /work (UID 1000's) copied over the new volume's owner and mode.
        "volumes": {volume: {"bind": "/work", "mode": "rw,nocopy"}},
    }  # fmt: skip


# --- engine checks -------------------------------------------------------------------------------

NO_DOCKER = (
    "docker is not installed: install Docker (Docker Desktop, or your Linux distribution's "
    "docker.io), then run this again"
)
NO_ENGINE = (
    "no Docker engine answers: start Docker (Docker Desktop, or `sudo systemctl start docker`), "
    "then run this again"
)
NO_PERMISSION = (
    "Docker runs, but you may not use it (permission denied on {socket}): add yourself to the "
    "docker group (`sudo usermod -aG docker $USER`), then `newgrp docker` or log out and back in"
)
ELSEWHERE = (
    "no Docker engine answers at {where}: unset it (`{unset}`) to use this machine's engine, "
    "or start the engine it names"
)


def _cannot_connect(problem: str) -> UserError:
    """The one line for an engine that does not answer: no engine, no permission, or a
    DOCKER_HOST / context that points nowhere."""
    if "permission denied" in problem.lower():
        found = re.search(r"unix://\S+?(?=[\s:]|$)", problem)
        return UserError(NO_PERMISSION.format(socket=found.group(0) if found else "its socket"))
    if os.environ.get("DOCKER_HOST"):
        where = f"DOCKER_HOST={os.environ['DOCKER_HOST']}"
        return UserError(ELSEWHERE.format(where=where, unset="unset DOCKER_HOST"))
    context = os.environ.get("DOCKER_CONTEXT", "")
    if context and context != "default":
        where = f"DOCKER_CONTEXT={context}"
        return UserError(ELSEWHERE.format(where=where, unset="unset DOCKER_CONTEXT"))
    return UserError(NO_ENGINE)


def check_engine(run: Runner | None = None) -> dict:
    """The engine's `docker info`, or a UserError in one line saying what stands in the way."""
    done = (run or Runner())([DOCKER, "info", "--format", "{{json .}}"])
    if done.code == 127:
        raise UserError(NO_DOCKER)
    try:
        info = json.loads(done.out or "{}")  # `invoke --dry` runs nothing, so reads nothing
    except ValueError:
        raise _cannot_connect(done.err) from None
    if not isinstance(info, dict):
        raise _cannot_connect(done.err)
    # With --format, `docker info` exits 0 where no engine answers (docker/cli#5900): its JSON
    # names the failure under ServerErrors.
    errors = " ".join(info.get("ServerErrors") or [])
    if done.code or errors:
        raise _cannot_connect(f"{errors} {done.err}")
    return info


def engine_answers(run: Runner | None = None) -> bool:
    """Whether `check_engine` passes (for clean-ups that have nothing to do without an engine)."""
    try:
        check_engine(run)
    except UserError:
        return False
    return True


def gpu_runtime(info: dict, variant: Variant) -> bool:
    """Whether the engine (`info`: its `docker info`) has the runtime that gives `variant` its GPU."""
    return bool(variant.gpu_runtime) and variant.gpu_runtime in (info.get("Runtimes") or {})


def image_exists(image: str, run: Runner | None = None) -> bool:
    return (run or Runner())(image_inspect_command(image)).ok


def check_image(
    variant: Variant,
    platform: str | None = None,
    image: str | None = None,
    run: Runner | None = None,
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


def gpus_for(variant: Variant, info: dict) -> bool:
    """Whether to hand `variant`'s containers its GPUs: it has some, and the engine can (devices
    passed as they are need no runtime)."""
    return bool(variant.gpu_args) and (not variant.gpu_runtime or gpu_runtime(info, variant))


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
        DOCKER, "build", "--quiet", "--network", "none", "--file", str(LABEL_DOCKERFILE),
        "--build-arg", f"IMAGE={image_id}", "--build-arg", f"VENV_TREE={venv_tree}",
        "--iidfile", str(iidfile),
        *(["--platform", docker_platform] if docker_platform else []),
    ]  # fmt: skip
    for tag in tags:
        cmd += ["--tag", tag]
    return [*cmd, str(context)]


def label_template(name: str) -> str:
    return '{{index .Config.Labels "' + name + '"}}'


def in_image_command(image: str, program: list[str], platform: str | None = None) -> list[str]:
    """`docker run` of `program` in `image` for what it holds, never for what it serves: no
    network, its entrypoint bypassed, stdin open (a script may come that way), hardened."""
    entrypoint, *args = program
    owner = Owner.current()
    spec = Spec(variants.VARIANTS["cpu"], owner.user, {**owner.labels(), "dllab.role": "run"})
    return [
        DOCKER, "run", "--rm", "--interactive", "--network", "none", *spec.args(),
        *run_platform(platform), "--entrypoint", entrypoint, image, *args,
    ]  # fmt: skip


def save_command(image: str) -> list[str]:
    """`docker save` of `image` to stdout."""
    return [DOCKER, "save", image]


def load_command() -> list[str]:
    """`docker load` of an image archive on stdin (docker save's, gzip-compressed or not)."""
    return [DOCKER, "load"]


def all_images_command() -> list[str]:
    """Every image ID the engine holds, intermediate ones included."""
    return [DOCKER, "image", "ls", "--all", "--quiet", "--no-trunc"]


# --- registries: publish and pull before build (dllab.registry) --------------------------------


def tag_command(image: str, target: str) -> list[str]:
    return [DOCKER, "tag", image, target]


def push_command(reference: str) -> list[str]:
    """`docker push`: its last line names the digest the registry stored."""
    return [DOCKER, "push", reference]


def pull_command(reference: str, platform: str | None = None) -> list[str]:
    """`docker pull` of `platform`'s image (the engine's own by default); quiet, so that a failure
    is its error alone (dllab.registry reads it)."""
    return [DOCKER, "pull", "--quiet", *run_platform(platform), reference]


def _insecure(insecure: bool) -> list[str]:
    # The engine lets a registry on a loopback address speak plain HTTP; `docker manifest` does the
    # same only with --insecure (which also skips TLS checks: never for another address).
    return ["--insecure"] if insecure else []


def manifest_inspect_command(reference: str, insecure: bool = False) -> list[str]:
    """The registry's manifest of `reference`, verbose: its digest, platform and layer sizes."""
    return [DOCKER, "manifest", "inspect", "--verbose", *_insecure(insecure), reference]


def manifest_create_command(
    index: str, manifests: Sequence[str], insecure: bool = False
) -> list[str]:
    """A multi-platform index named `index` of `manifests` (by digest), kept by the CLI until pushed."""
    return [DOCKER, "manifest", "create", "--amend", *_insecure(insecure), index, *manifests]


def manifest_push_command(index: str, insecure: bool = False) -> list[str]:
    """Push the index, then forget the CLI's copy (--purge); it prints the index's digest."""
    return [DOCKER, "manifest", "push", "--purge", *_insecure(insecure), index]
