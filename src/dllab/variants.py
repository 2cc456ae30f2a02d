"""The one registry of dllab variants: what each installs, where it runs, what it promises.

Adding a variant (say `rocm`) is:
1. one `Variant(...)` row below: its accelerator, runtimes, lock platforms, frameworks, the
   environment it sets, the engine runtime and `docker run` arguments that give it its device;
2. its extra in pyproject.toml, then `invoke lock --variant rocm` (writes locks/rocm-*.txt);
3. for Docker: a final stage `FROM lab AS rocm` in docker/Dockerfile with its ENV (a unit test
   compares it with the row), and `.devcontainer/rocm/devcontainer.json`;
4. a job named after it in .github/workflows/ci.yml, where a runner has its device.
Tasks, tests, build arguments, docs and the doctor read everything else from the row
(tests/unit/test_variants.py builds a fake fourth variant's commands to prove it).
"""

from __future__ import annotations

import os
import platform as _platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dllab.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "locks"

ACCELERATORS = ("cpu", "cuda", "mps")
# Debian bookworm's python, the images' base: every lock resolves for it.
PYTHON = "3.11.2"
PYTHON_MINOR = ".".join(PYTHON.split(".")[:2])  # pip download --python-version
PYTHON_ABI = "cp" + PYTHON_MINOR.replace(".", "")  # pip download --abi
RUNTIMES = ("docker", "native")


@dataclass(frozen=True)
class Platform:
    """A target a lock is resolved for."""

    name: str  # spelled as in lock file names: linux-x86_64
    uv: str  # uv pip compile --python-platform
    wheel_tags: tuple[str, ...]  # pip download --platform, most specific first
    docker: str | None  # docker --platform, for images


PLATFORMS = {
    p.name: p
    for p in (
        Platform(
            "linux-x86_64",
            "x86_64-manylinux_2_28",
            tuple(f"manylinux_2_{m}_x86_64" for m in range(28, 4, -1))
            + ("manylinux2014_x86_64", "manylinux1_x86_64", "linux_x86_64"),
            "linux/amd64",
        ),
        Platform(
            "linux-aarch64",
            "aarch64-manylinux_2_28",
            tuple(f"manylinux_2_{m}_aarch64" for m in range(28, 16, -1))
            + ("manylinux2014_aarch64",),
            "linux/arm64",
        ),
        Platform(
            "macos-arm64",
            "aarch64-apple-darwin",
            tuple(f"macosx_{v}_0_arm64" for v in range(14, 10, -1)),
            None,
        ),
    )
}


@dataclass(frozen=True)
class Variant:
    """One row of the registry."""

    name: str
    accelerator: str  # what every framework must see: one of ACCELERATORS
    runtimes: tuple[str, ...]  # the first is the default
    platforms: tuple[str, ...]  # lock targets; the first is the primary one
    frameworks: tuple[str, ...]  # what the environment promises to ship
    summary: str
    env: tuple[tuple[str, str], ...] = ()  # extra environment the variant sets
    # Where its torch build comes from, besides PyPI (DLLAB_TORCH_INDEX overrides).
    torch_index: str = ""
    lock_excludes: tuple[str, ...] = ()  # packages left out of the lock (see the row)
    # The Docker engine runtime its accelerator needs, and the `docker run` arguments that hand
    # the accelerator to a container.
    gpu_runtime: str = ""
    gpu_args: tuple[str, ...] = ()
    # Natively, conda/mamba builds it from this file where one is installed (else a venv from
    # the lock); `invoke lock` writes it.
    conda_file: str = ""
    elsewhere: str = ""  # what to use on a platform it has no lock for

    @property
    def image(self) -> str:
        """dllab:cpu; DLLAB_IMAGE_NAME renames the repository (a second tree's images, a registry's)."""
        return f"{image_name()}:{self.name}"

    def lock(self, platform: str) -> Path:
        return LOCKS / f"{self.name}-{platform}.txt"

    @property
    def locks(self) -> dict[str, Path]:
        return {p: self.lock(p) for p in self.platforms}

    @property
    def dockerized(self) -> bool:
        return "docker" in self.runtimes


VARIANTS = {
    v.name: v
    for v in (
        Variant(
            name="cpu",
            accelerator="cpu",
            runtimes=("docker", "native"),
            platforms=("linux-x86_64", "linux-aarch64"),
            frameworks=("tensorflow", "torch", "jax", "keras"),
            summary="any machine: tensorflow-cpu, torch CPU build, JAX",
            torch_index="https://download.pytorch.org/whl/cpu",
        ),
        Variant(
            name="cuda",
            accelerator="cuda",
            runtimes=("docker", "native"),
            platforms=("linux-x86_64",),
            frameworks=("tensorflow", "torch", "keras"),
            summary="NVIDIA GPUs: CUDA and cuDNN from the frameworks' pip wheels",
            # TF's nvidia-cudnn-cu12 / nvidia-nccl-cu12 and torch's -cu13 twins write the same
            # files (nvidia/cudnn/lib/libcudnn.so.9, nvidia/nccl/lib/libnccl.so.2): whichever pip
            # installs last would win. We keep torch's exact pins (cuDNN 9.24, NCCL 2.30.7); TF
            # accepts any cuDNN 9.x >= 9.3 and NCCL >= 2.27.7. See locks/README.md.
            lock_excludes=("nvidia-cudnn-cu12", "nvidia-nccl-cu12"),
            gpu_runtime="nvidia",  # the NVIDIA Container Toolkit
            gpu_args=("--gpus", "all"),
            env=(
                # Both frameworks share one GPU: neither grabs all its memory up front.
                ("TF_FORCE_GPU_ALLOW_GROWTH", "true"),
                ("XLA_PYTHON_CLIENT_PREALLOCATE", "false"),
                ("NVIDIA_VISIBLE_DEVICES", "all"),
                ("NVIDIA_DRIVER_CAPABILITIES", "compute,utility"),
            ),
        ),
        Variant(
            name="metal",
            accelerator="mps",
            runtimes=("native",),
            platforms=("macos-arm64",),
            frameworks=("tensorflow", "torch", "keras"),
            summary="Apple silicon, natively: tensorflow-metal + torch MPS",
            env=(("PYTORCH_ENABLE_MPS_FALLBACK", "1"),),
            conda_file="environment.yml",
            elsewhere="use --variant cpu, or --variant cuda on a machine with an NVIDIA GPU",
        ),
    )
}


# Where a variant's torch differs by platform, and why (doctor prints it; a unit test checks it
# against the locks). cpu: PyPI's CPU-only aarch64 torch builds end at 2.10 (2.11+ there are CUDA
# 13 builds); the matching 2.13.0+cpu aarch64 build is on PyTorch's CPU index, which our CI
# cannot reach to lock and test it. See locks/README.md.
TORCH_BY_PLATFORM = {
    "cpu": (
        {"linux-x86_64": "2.13.0+cpu", "linux-aarch64": "2.9.1"},
        "PyPI's CPU-only aarch64 torch ends at 2.10; see locks/README.md",
    ),
}


def image_name() -> str:
    """The repository of dllab's images: DLLAB_IMAGE_NAME, else `dllab`."""
    return os.environ.get("DLLAB_IMAGE_NAME") or "dllab"


def get(name: str) -> Variant:
    """The variant called `name`, or a UserError listing the valid ones."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise UserError(f"unknown variant {name!r}: choose one of {', '.join(VARIANTS)}") from None


def host_platform() -> str:
    """This machine as a platform name: linux-x86_64, linux-aarch64, macos-arm64, ..."""
    system = {"Darwin": "macos"}.get(_platform.system(), _platform.system().lower())
    machine = {"amd64": "x86_64", "arm64": "arm64" if system == "macos" else "aarch64"}.get(
        _platform.machine().lower(), _platform.machine().lower()
    )
    return f"{system}-{machine}"


def engine_platform(host: str | None = None) -> str:
    """The Linux platform a Docker engine on `host` (default: this machine) runs natively.

    Docker Desktop runs a Linux VM of the Mac's own architecture: macos-arm64 -> linux-aarch64."""
    host = host or host_platform()
    system, _, machine = host.partition("-")
    if system == "linux":
        return host
    return "linux-" + {"arm64": "aarch64", "amd64": "x86_64"}.get(machine, machine)


def docker_platform(variant: Variant, platform: str | None = None, host: str | None = None) -> str:
    """The lock platform to build or run `variant`'s image for: `platform`, else the engine's own;
    a UserError in one line when the variant has no lock for it, with what to use instead."""
    native = engine_platform(host)
    chosen = platform or native
    if chosen in variant.platforms:
        return chosen
    if platform:
        raise UserError(
            f"{variant.name} has no lock for {chosen}: choose one of {', '.join(variant.platforms)}"
        )
    others = [v.name for v in VARIANTS.values() if v.dockerized and native in v.platforms]
    instead = f"use --variant {' or '.join(others)} here, or " if others else ""
    raise UserError(
        f"{variant.name} has no lock for {native} (this machine's Docker): {instead}"
        f"build {variant.name} on a {' or '.join(variant.platforms)} machine"
    )


def check_runtime(variant: Variant, runtime: str | None = None, host: str | None = None) -> str:
    """The runtime to use for `variant` on `host`, or a UserError saying what to do instead."""
    runtime = runtime or variant.runtimes[0]
    host = host or host_platform()
    if runtime not in RUNTIMES:
        raise UserError(f"unknown runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    if runtime not in variant.runtimes:
        raise UserError(
            f"variant {variant.name} runs {' or '.join(variant.runtimes)} only, not {runtime}"
        )
    if runtime == "native" and host not in variant.platforms:
        if variant.runtimes == ("native",):
            where = " or ".join(
                p.replace("macos", "macOS").replace("-", " ") for p in variant.platforms
            )
            raise UserError(
                f"{variant.name} is native {where} only (this is {host}): {variant.elsewhere}"
            )
        raise UserError(
            f"variant {variant.name} has no native lock for {host}: "
            f"use Docker (--runtime docker) or one of {', '.join(variant.platforms)}"
        )
    return runtime


def expected_accelerator() -> str | None:
    """The accelerator this environment promises (DLLAB_ACCELERATOR), if it says."""
    return os.environ.get("DLLAB_ACCELERATOR") or None


def torch_index(variant: Variant) -> str:
    """The extra index for `variant`'s torch: DLLAB_TORCH_INDEX if set (even empty), else the registry's."""
    return os.environ.get("DLLAB_TORCH_INDEX", variant.torch_index)


def gpu_args(variant: Variant, devices: Sequence[str] | None = None) -> list[str]:
    """The `docker run` options that hand `variant`'s accelerator to a container: all of it, or the
    NVIDIA GPUs `devices` (ids or UUIDs) alone; device nodes are passed as the row names them."""
    args = list(variant.gpu_args)
    if devices and args[:1] == ["--gpus"]:
        # --gpus reads CSV: a list of devices is one quoted field.
        args[1] = '"device={}"'.format(",".join(devices))
    return args


def gpu_request(variant: Variant, devices: Sequence[str] | None = None) -> dict:
    """The same as the Docker SDK's device request (a DockerSpawner learner's GPUs)."""
    if variant.gpu_args[:1] != ("--gpus",):
        raise UserError(f"{variant.name} hands out devices, not GPUs: no device request for it")
    which = {"device_ids": list(devices)} if devices else {"count": -1}
    return {**which, "capabilities": [["gpu"]]}


def check_accelerator(name: str) -> str:
    if name not in ACCELERATORS:
        raise UserError(f"unknown accelerator {name!r}: choose one of {', '.join(ACCELERATORS)}")
    return name
