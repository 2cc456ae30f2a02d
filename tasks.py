"""dllab tasks: `invoke --list`; every side effect goes through c.run, so `invoke --dry TASK` shows it."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import time
from pathlib import Path

from invoke import Collection, Exit, task

sys.path.insert(0, str(Path(__file__).parent / "src"))  # tasks work before dllab is installed

from dllab import containers, locks, variants  # noqa: E402
from dllab.errors import UserError  # noqa: E402

ROOT = Path(__file__).parent
PYTHON = sys.executable
VARIANT_HELP = f"one of {', '.join(variants.VARIANTS)}"


def _variant(name: str, runtime: str | None = None) -> tuple[variants.Variant, str]:
    """The variant and runtime to use, or Exit with one actionable line."""
    try:
        variant = variants.get(name)
        return variant, variants.check_runtime(variant, runtime)
    except UserError as exc:
        raise Exit(f"dllab: {exc}", code=2) from None


def _engine(c) -> None:
    if not c.run("docker info --format '{{.ServerVersion}}'", hide=True, warn=True).ok:
        raise Exit(
            "dllab: no Docker engine answers: start Docker (Docker Desktop, or `sudo systemctl "
            "start docker`; CI: .ci/engine), then run this again",
            code=2,
        )


def _image(c, variant: variants.Variant) -> None:
    if not c.run(f"docker image inspect {variant.image}", hide=True, warn=True).ok:
        raise Exit(
            f"dllab: no image {variant.image}: run `invoke build --variant {variant.name}`", code=2
        )


def _nvidia_runtime(c) -> bool:
    result = c.run("docker info --format '{{json .Runtimes}}'", hide=True, warn=True)
    return result.ok and "nvidia" in result.stdout


def _docker_run(c, variant: variants.Variant) -> str:
    """`docker run --rm` for the variant's image, with the GPUs where the engine can give them."""
    _engine(c)
    _image(c, variant)
    gpus = " --gpus all" if variant.accelerator == "cuda" and _nvidia_runtime(c) else ""
    return f"docker run --rm{gpus}"


def _host_ids() -> tuple[int, int]:
    """The UID/GID the container's user takes; root on the host gets 1000 (lab never runs as root)."""
    return (os.getuid(), os.getgid()) if os.getuid() else (1000, 1000)


def _writable_dir(c, path) -> None:
    """Make `path` for a container to write to as the host user (as 1000 when that is root)."""
    c.run(f"mkdir -p {path}")
    if os.getuid() == 0:
        c.run(f"chown {':'.join(map(str, _host_ids()))} {path}")


def _revision(c) -> str:
    result = c.run("git rev-parse --short HEAD", hide=True, warn=True)
    return (result.stdout.strip() if result.ok else "") or "unknown"


@task(
    help={
        "variant": VARIANT_HELP + " (default: all)",
        "check": "only say whether locks are stale",
        "find_links": "extra folder of wheels for uv (repeatable)",
    },
    iterable=["find_links"],
)
def lock(c, variant=None, check=False, find_links=None):
    """Compile locks/<variant>-<platform>.txt from pyproject.toml's extras (uv, hashed)."""
    args = f" --variant {_variant(variant)[0].name}" if variant else ""
    links = "".join(f" --find-links {link}" for link in find_links or [])
    result = c.run(
        f"{PYTHON} -m dllab.locks {'check' if check else 'compile'}{args}{links}", warn=True
    )
    if result.failed:
        raise Exit(code=result.exited)


@task(help={"variant": VARIANT_HELP, "platform": "lock platform (default: the variant's first)"})
def wheelhouse(c, variant="cpu", platform=None):
    """Download every wheel of a variant's lock, as a folder and an image, for offline builds."""
    chosen, _ = _variant(variant, "docker")
    platform = platform or chosen.platforms[0]
    folder = containers.wheelhouse(chosen, platform)
    index = variants.torch_index(chosen)
    tags = "".join(f" --platform {t}" for t in variants.PLATFORMS[platform].wheel_tags)
    c.run(
        f"{PYTHON} -m pip download --quiet --no-deps --require-hashes --only-binary=:all:"
        f" --python-version 3.11 --implementation cp --abi cp311{tags}"
        f"{f' --extra-index-url {index}' if index else ''}"
        f" -r {chosen.lock(platform)} -d {folder}"
    )
    _engine(c)
    c.run(containers.quote(containers.wheels_image_command(chosen, platform)))


def _native_env(c, variant: variants.Variant) -> None:
    """The native environment: conda/mamba from environment.yml where one is installed, else a venv."""
    conda = next((tool for tool in ("mamba", "conda") if shutil.which(tool)), None)
    if conda and variant.name == "metal":
        c.run(f"{conda} env update --name dllab-{variant.name} --file environment.yml --prune")
        c.run(
            f"{conda} run --name dllab-{variant.name} pip install --no-deps --no-build-isolation -e ."
        )
        return
    venv = f".venv-{variant.name}"
    c.run(f"{PYTHON} -m venv {venv}")
    c.run(
        f"{venv}/bin/pip install --require-hashes --no-deps -r {variant.lock(variants.host_platform())}"
    )
    c.run(f"{venv}/bin/pip install --no-deps --no-build-isolation -e .")


def _native(variant: variants.Variant, command: str) -> str:
    """`command` run in the variant's native environment, with the variables it promises."""
    conda = next((tool for tool in ("mamba", "conda") if shutil.which(tool)), None)
    if conda and variant.name == "metal":
        return f"{conda} run --no-capture-output --name dllab-{variant.name} {command}"
    env = " ".join(
        f"{k}={v}"
        for k, v in (
            ("DLLAB_VARIANT", variant.name),
            ("DLLAB_ACCELERATOR", variant.accelerator),
            *variant.env,
        )
    )
    return f"env {env} .venv-{variant.name}/bin/{command}"


@task(
    help={
        "variant": VARIANT_HELP,
        "platform": "lock platform (default: the variant's first)",
        "offline": "build with no network, from the wheels `invoke wheelhouse` downloaded",
    }
)
def build(c, variant="cpu", platform=None, offline=False):
    """Build the dllab:<variant> image, streaming each step; metal builds the native environment."""
    chosen, runtime = _variant(variant)
    if runtime == "native":
        _native_env(c, chosen)
        return
    platform = platform or chosen.platforms[0]
    if platform not in chosen.platforms:
        raise Exit(
            f"dllab: {chosen.name} has no lock for {platform}: choose one of {', '.join(chosen.platforms)}",
            code=2,
        )
    _engine(c)
    wheels = containers.wheels_image(chosen, platform)
    if offline and not c.run(f"docker image inspect {wheels}", hide=True, warn=True).ok:
        raise Exit(
            f"dllab: no {wheels} image for an offline build: run `invoke wheelhouse --variant {chosen.name}` first",
            code=2,
        )
    c.run(containers.quote(containers.build_command(chosen, platform, _revision(c), offline)), pty=False)


@task(
    help={
        "variant": VARIANT_HELP,
        "port": "host port, on 127.0.0.1 (default 8888; the next free one if busy)",
        "work": "your work directory, mounted at /work (default ./work; never deleted)",
        "stop": "stop the running lab instead",
    }
)
def lab(c, variant="cpu", port=8888, work="work", stop=False):
    """Start JupyterLab with the labs, on 127.0.0.1 with a token; print its URL."""
    chosen, runtime = _variant(variant)
    if runtime == "native":
        c.run(
            _native(
                chosen,
                f"jupyter lab --ServerApp.root_dir=. --port {port} --LabApp.default_url=/lab/tree/labs/README.md",
            )
        )
        return
    _engine(c)
    name = containers.container_name(chosen)
    if stop:
        c.run(f"docker rm --force {name}")
        return
    _image(c, chosen)
    gpus = chosen.accelerator == "cuda"
    if gpus and not _nvidia_runtime(c):
        raise Exit(
            "dllab: the cuda lab needs the NVIDIA Container Toolkit (no nvidia runtime in `docker info`): "
            "install it and restart Docker, or use --variant cpu",
            code=2,
        )
    if c.run(f"docker container inspect {name}", hide=True, warn=True).ok:
        raise Exit(
            f"dllab: a {chosen.name} lab is already running ({name}): `invoke lab --stop` first",
            code=2,
        )
    free = containers.free_port(int(port))
    if free is None:
        raise Exit(
            f"dllab: ports {port}-{int(port) + 19} are all busy: choose another with --port", code=2
        )
    if free != int(port):
        print(f"port {port} is busy: using {free}", file=sys.stderr)
    uid, gid = _host_ids()
    token = secrets.token_hex(24)
    _writable_dir(c, work)
    c.run(
        containers.quote(containers.lab_command(chosen, free, Path(work), token, uid, gid, gpus)),
        hide="stdout",
    )
    url = f"http://127.0.0.1:{free}/lab?token={token}"
    for _ in range(120):
        if c.run(
            f"{PYTHON} -c \"import urllib.request as u; u.urlopen('http://127.0.0.1:{free}/api', timeout=1)\"",
            hide=True,
            warn=True,
        ).ok:
            break
        time.sleep(0.5)
    else:
        c.run(f"docker logs --tail 20 {name}", warn=True)
        raise Exit(
            f"dllab: JupyterLab did not answer within 60 s: see `docker logs {name}`", code=1
        )
    print(
        f"JupyterLab ({chosen.name}): {url}\nyour work: {Path(work).resolve()}  (stop: invoke lab --stop --variant {chosen.name})"
    )


@task(
    help={
        "variant": f"run tests/env and the labs inside this variant ({VARIANT_HELP}); "
        "default: the host suite, with image tests when an engine answers",
        "pytest_args": "extra arguments for pytest",
    }
)
def test(c, variant=None, pytest_args=""):
    """Run the tests: on this machine, or inside the <variant> environment expecting its accelerator."""
    if variant is None:
        c.run(f"{PYTHON} -m pytest {pytest_args}".strip(), pty=False)
        return
    chosen, runtime = _variant(variant)
    suites = "tests/env tests/labs"
    if runtime == "native":
        c.run(_native(chosen, f"python -m pytest {suites} {pytest_args}"))
        return
    c.run(
        f"{_docker_run(c, chosen)} --shm-size 2g --workdir /opt/dllab {chosen.image} "
        f"python -m pytest -p no:cacheprovider {suites} {pytest_args}".strip(),
        pty=False,
    )


@task(
    help={
        "variant": "diagnose inside this variant's image instead of here",
        "expect": "accelerator every framework must see: cpu, cuda or mps",
        "train": "also run a real training step per framework",
        "json": "print JSON",
    }
)
def doctor(c, variant=None, expect=None, train=False, json=False):
    """Show what each framework sees, and how to fix what is not the promise."""
    flags = f"{' --expect ' + expect if expect else ''}{' --train' if train else ''}{' --json' if json else ''}"
    if variant is None:
        result = c.run(f"{PYTHON} -m dllab doctor{flags}", warn=True, pty=False)
    else:
        chosen, runtime = _variant(variant)
        if runtime == "native":
            command = _native(chosen, f"python -m dllab doctor{flags}")
        else:
            command = f"{_docker_run(c, chosen)} {chosen.image} python -m dllab doctor{flags}"
        result = c.run(command, warn=True, pty=False)
    if result.failed:
        raise Exit(code=result.exited)


@task(
    help={
        "variant": "benchmark inside this variant's environment (default: here, natively)",
        "runtime": "docker or native (default: the variant's first)",
        "quick": "smaller sizes and fewer repeats (about a minute on 2 cores)",
        "environment": "also image size, warm rebuild, run-to-ready, container vs native",
    }
)
def bench(c, variant=None, runtime=None, quick=False, environment=False):
    """Measure each framework on this device (JSON + PNG under .bench/) and print a table."""
    flags = " --quick" if quick else ""
    if variant is None:
        c.run(f"{PYTHON} -m dllab bench{flags}", pty=False)
        return
    chosen, runtime = _variant(variant, runtime)
    if runtime == "native":
        c.run(_native(chosen, f"python -m dllab bench{flags}"), pty=False)
        return
    uid, gid = _host_ids()
    run = _docker_run(c, chosen)
    _writable_dir(c, ".bench")
    c.run(
        f"{run} --user root --env DLLAB_UID={uid} --env DLLAB_GID={gid} "
        f"--env DLLAB_LOCK_DIGEST={locks.digest(chosen, chosen.platforms[0])} "
        f"--volume {ROOT.resolve()}/.bench:/work/.bench {chosen.image} "
        f"python -m dllab bench{flags} --out /work/.bench",
        pty=False,
    )
    if environment:
        c.run(
            f"{PYTHON} -m dllab.envbench --variant {chosen.name} --revision {_revision(c)}",
            pty=False,
        )


@task(
    help={
        "variant": VARIANT_HELP,
        "work": "your work directory; the labs log to its runs/ folder (default ./work)",
        "port": "host port, on 127.0.0.1 (default 6006)",
    }
)
def tensorboard(c, variant="cpu", work="work", port=6006):
    """Serve TensorBoard for the labs' logs (WORK/runs) on 127.0.0.1."""
    chosen, runtime = _variant(variant)
    if runtime == "native":
        c.run(_native(chosen, f"tensorboard --logdir {work}/runs --host 127.0.0.1 --port {port}"))
        return
    uid, gid = _host_ids()
    c.run(
        f"{_docker_run(c, chosen)} --user root --env DLLAB_UID={uid} --env DLLAB_GID={gid} "
        f"--publish 127.0.0.1:{port}:6006 --volume {Path(work).resolve()}:/work {chosen.image} "
        "tensorboard --logdir /work/runs --host 0.0.0.0 --port 6006"
    )


@task(help={"variant": VARIANT_HELP + " (default: all)"})
def clean(c, variant=None):
    """Remove dllab's containers and images; your work directory and wheelhouse stay."""
    chosen = (
        [_variant(variant)[0]]
        if variant
        else [v for v in variants.VARIANTS.values() if v.dockerized]
    )
    _engine(c)
    for v in chosen:
        c.run(f"docker rm --force {containers.container_name(v)}", warn=True, hide=True)
        c.run(
            f"docker image ls --quiet --filter label=dllab.variant={v.name} | xargs --no-run-if-empty docker rmi --force"
        )


ns = Collection(lock, wheelhouse, build, lab, tensorboard, test, doctor, bench, clean)
ns.configure({"run": {"echo": True}})
