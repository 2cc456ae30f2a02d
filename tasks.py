"""dllab tasks: `invoke --list`. Each task is one call into src/dllab; every command runs through
dllab's Runner on invoke's c.run, so `invoke --dry TASK` shows it."""

from __future__ import annotations

import functools
import os
import shlex
import sys
from pathlib import Path


def _bootstrap() -> None:
    """`python3 tasks.py TASK` from a fresh clone: make .venv with the tasks' tools (invoke, the
    Docker SDK, uv, pytest) on first use, one line per step, then run the task with it."""
    venv = Path(__file__).resolve().parent / ".venv"
    os.environ.setdefault("DLLAB_TASKS_PROGRAM", shlex.join(["python3", sys.argv[0]]))
    if Path(sys.prefix).resolve() == venv.resolve() or os.environ.get("DLLAB_BOOTSTRAPPED"):
        return
    if sys.version_info < (3, 11):  # noqa: UP036 (a fresh machine may have an older python3)
        sys.exit(f"dllab: the tasks need Python 3.11 or newer, this is {sys.version.split()[0]}")
    python = venv / "bin" / "python"
    if not (venv / "bin" / "invoke").exists():
        import subprocess

        for step, cmd in (
            (f"making {venv}", [sys.executable, "-m", "venv", str(venv)]),
            ("installing the tasks' tools into it (pip install -e '.[dev]', about a minute)",
             [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
              "-e", f"{venv.parent}[dev]"]),
        ):  # fmt: skip
            print(f"dllab: first run: {step}", file=sys.stderr, flush=True)
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:  # pip's output only when it failed
                sys.exit(f"{done.stdout}{done.stderr}dllab: {shlex.join(cmd)} failed (above)")
    os.environ["DLLAB_BOOTSTRAPPED"] = "1"  # once: never a loop, whatever .venv turns out to be
    os.execv(python, [str(python), __file__, *sys.argv[1:]])


if __name__ == "__main__":  # before `import invoke`, which a fresh machine does not have yet
    _bootstrap()

from invoke import Collection, Exit, task  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent / "src"))  # tasks work before dllab is installed

from dllab import bundle as bundles  # noqa: E402
from dllab import environments, images, provenance, variants  # noqa: E402
from dllab import hub as hubs  # noqa: E402
from dllab import lab as labs  # noqa: E402
from dllab import registry as registries  # noqa: E402
from dllab import workers as training  # noqa: E402
from dllab.containers import port_number  # noqa: E402
from dllab.errors import UserError  # noqa: E402
from dllab.progress import report as progress_report  # noqa: E402
from dllab.runner import InvokeRunner, quote  # noqa: E402

VARIANT_HELP = f"one of {', '.join(variants.VARIANTS)}"
PLATFORM_HELP = (
    "lock platform, e.g. linux-aarch64 (default: this machine's; another is tagged "
    "dllab:<variant>-<platform>)"
)
BUILD_HELP = (
    "build the image here first (cached steps reused), never pulling it; without it a missing "
    "image is pulled from DLLAB_REGISTRY (or [tool.dllab] registry) where one is set, else built"
)


def dllab_task(*args, **kwargs):
    """invoke's @task with dllab's one ending for bad input: a UserError is one `dllab: ...` line
    and exit 2; a task that returns an exit code ends with it."""

    def decorate(body):
        @functools.wraps(body)
        def run(c, *a, **kw):
            try:
                code = body(c, *a, **kw)
            except UserError as exc:
                raise Exit(f"dllab: {exc}", code=2) from None
            if code:
                raise Exit(code=code)

        return task(*args, **kwargs)(run)

    return decorate


def _variant(name: str, runtime: str | None = None) -> variants.Variant:
    variant = variants.get(name)
    variants.check_runtime(variant, runtime)
    return variant


@dllab_task(
    help={
        "variant": VARIANT_HELP + " (default: all)",
        "check": "only say whether locks are stale or corrupt",
        "find_links": "extra folder of wheels for uv (repeatable)",
        "as_of": "resolve anew with nothing uploaded on or after this day, YYYY-MM-DD (UTC); "
        "default: the day each lock records",
        "resolve": "with --check: also resolve each lock again as of its day (uv, the indexes)",
    },
    iterable=["find_links"],
)
def lock(c, variant=None, check=False, find_links=None, as_of=None, resolve=False):
    """Compile locks/<variant>-<platform>.txt from pyproject.toml's extras (uv, hashed)."""
    flags = [*(["--variant", variants.get(variant).name] if variant else []),
             *(a for link in find_links or [] for a in ("--find-links", link)),
             *(["--as-of", as_of] if as_of else []), *(["--resolve"] if resolve else [])]  # fmt: skip
    cmd = [sys.executable, "-m", "dllab.locks", "check" if check else "compile", *flags]
    return InvokeRunner(c)(cmd, quiet=False).code


@dllab_task(help={"variant": VARIANT_HELP, "platform": PLATFORM_HELP})
def wheelhouse(c, variant="cpu", platform=None):
    """Download every wheel of a variant's lock, as a folder and an image, for offline builds."""
    chosen = _variant(variant, "docker")
    images.wheelhouse(InvokeRunner(c), chosen, variants.docker_platform(chosen, platform))


@dllab_task(
    help={
        "variant": VARIANT_HELP,
        "platform": PLATFORM_HELP,
        "offline": "build with no network, from the wheels `invoke wheelhouse` downloaded",
    }
)
def build(c, variant="cpu", platform=None, offline=False):
    """Build the dllab:<variant> image, streaming each step; metal builds the native environment."""
    images.build(InvokeRunner(c), _variant(variant), platform, offline)


@dllab_task(
    help={
        "variant": VARIANT_HELP,
        "port": "host port, on 127.0.0.1 (default 8888; the next free one if busy)",
        "work": "your work folder, mounted at /work (default ./work; never deleted)",
        "stop": "stop your running lab instead (gracefully: kernels shut down)",
        "platform": PLATFORM_HELP,
        "no_browser": "do not open the labs in your browser",
        "build": BUILD_HELP,
    }
)
def lab(c, variant="cpu", port="8888", work="work", stop=False, platform=None, no_browser=False,
        build=False):  # fmt: skip
    """Start JupyterLab with the labs, on 127.0.0.1 with a token; print its URL."""
    if stop:
        labs.stop(InvokeRunner(c), _variant(variant))
    else:
        labs.start(InvokeRunner(c), _variant(variant), port_number(port), work, platform, not no_browser, build)  # fmt: skip


@dllab_task(help={"variant": VARIANT_HELP})
def tensorboard(c, variant="cpu"):
    """Print the URL of TensorBoard for the labs' logs (WORK/runs), behind your lab's login."""
    labs.tensorboard(InvokeRunner(c), _variant(variant))


@dllab_task(
    help={
        "variant": f"run tests/env and the labs inside this variant ({VARIANT_HELP}); "
        "default: the host suite, with image tests when an engine answers",
        "pytest_args": "extra arguments for pytest",
        "platform": "with --variant: " + PLATFORM_HELP,
    }
)
def test(c, variant=None, pytest_args="", platform=None):
    """Run the tests: on this machine, or inside the <variant> environment expecting its accelerator."""
    return environments.test(InvokeRunner(c), variant, platform, shlex.split(pytest_args))


@dllab_task(
    help={
        "variant": "diagnose inside this variant's image instead of here",
        "expect": "accelerator every framework must see: cpu, cuda or mps",
        "train": "also run a real training step per framework",
        "json": "print JSON",
        "platform": "with --variant: " + PLATFORM_HELP,
    }
)
def doctor(c, variant=None, expect=None, train=False, json=False, platform=None):
    """Show what each framework sees, and how to fix what is not the promise."""
    flags = [*(["--expect", expect] if expect else []), *(["--train"] if train else []),
             *(["--json"] if json else [])]  # fmt: skip
    return environments.doctor(InvokeRunner(c), variant, platform, flags)


@dllab_task(
    help={
        "variant": "benchmark inside this variant's environment (default: here, natively)",
        "quick": "smaller sizes and fewer repeats (about a minute on 2 cores)",
        "out": "folder for the JSON and PNG (default .bench)",
        "environment": "with --variant: also image size, warm rebuild, run-to-ready, container vs native",
    }
)
def bench(c, variant=None, quick=False, out=".bench", environment=False):
    """Measure each framework on this device (JSON + PNG) and print a table."""
    return environments.bench(InvokeRunner(c), variant, out, ["--quick"] if quick else [], environment)  # fmt: skip


@dllab_task(help={"variant": VARIANT_HELP + " (default: all)"})
def clean(c, variant=None):
    """Remove your labs' and workers' containers and networks, and the images this checkout built."""
    chosen = [_variant(variant)] if variant else [v for v in variants.VARIANTS.values() if v.dockerized]  # fmt: skip
    images.clean(InvokeRunner(c), chosen)


@dllab_task(
    help={
        "variant": VARIANT_HELP,
        "workers": "number of workers, one container each (1 = a single process)",
        "framework": "torch, tensorflow or keras-jax",
        "epochs": "passes over the data",
        "build": BUILD_HELP,
    }
)
def train(c, variant="cpu", workers="2", framework="torch", epochs="3", build=False):
    """Train one model data-parallel on N workers with the framework's own engine; compare them."""
    return training.train(
        InvokeRunner(c), variant, training.count("--workers", workers), framework,
        training.count("--epochs", epochs, most=None), build=build,
    )  # fmt: skip


@dllab_task(
    help={
        "variant": VARIANT_HELP,
        "port": "hub port on 127.0.0.1 (default 8000)",
        "admin": "the admin's user name (made by the hub; its password in a private file)",
        "stop": "stop the hub and its learners' servers; their volumes stay",
        "reset_admin_password": "give the admin a new password (written to the same file)",
        "build": BUILD_HELP,
    }
)
def hub(c, variant="cpu", port="8000", admin="teacher", stop=False, reset_admin_password=False,
        build=False):  # fmt: skip
    """Serve dllab:<variant> to a class with JupyterHub + DockerSpawner on 127.0.0.1."""
    run = InvokeRunner(c)
    if stop:
        return hubs.stop_command(run)
    if reset_admin_password:
        return hubs.reset_admin_password(run)
    return hubs.start_command(run, variant, port_number(port), admin, build)


@dllab_task(
    help={
        "variant": VARIANT_HELP,
        "registry": "where to push: HOST[:PORT]/NAMESPACE, e.g. ghcr.io/yourorg (log in first "
        "with `docker login HOST`: dllab takes no password)",
        "deploy": "also write the index's digest into deploy/ (z2jh values, k8s manifests)",
    }
)
def publish(c, registry, variant="cpu", deploy=False):
    """Push the images built here, tagged by the locks' digest, as one multi-platform index."""
    registries.publish(InvokeRunner(c), _variant(variant, "docker"), registry, deploy)


@dllab_task(name="hub-remove-volumes", help={"yes": "really delete every learner's /work volume"})
def hub_remove_volumes(c, yes=False):
    """Delete this hub's learners' work volumes (lists them; needs --yes; refused while it runs)."""
    hubs.remove_volumes(InvokeRunner(c), yes)


@dllab_task(
    help={"work": "your work folder, where the labs' checks record progress (default ./work)"}
)
def progress(c, work="work"):
    """Print your self-checks' progress: each exercise, passed or not yet, attempts, last time."""
    return progress_report.main(["show", "--work", work])


@dllab_task(help={"variant": VARIANT_HELP, "platform": PLATFORM_HELP})
def verify(c, variant="cpu", platform=None):
    """Recompute the image's /opt/venv tree hash inside it; compare with its build's record and label."""
    print(f"dllab: {provenance.verify(InvokeRunner(c), variants.get(variant), platform)}")


@dllab_task(help={"variant": VARIANT_HELP, "platform": PLATFORM_HELP})
def sbom(c, variant="cpu", platform=None):
    """Print the image's CycloneDX SBOM (/opt/dllab/provenance/sbom.cdx.json)."""
    # stdout is the SBOM alone (its commands are queries, never echoed): `invoke sbom > sbom.cdx.json`.
    sys.stdout.write(provenance.sbom(InvokeRunner(c), variants.get(variant), platform))


@dllab_task(
    help={
        "variant": VARIANT_HELP,
        "out": "the bundle file to write",
        "key": "your OpenSSH private key, to sign the bundle's manifest (ssh-keygen -Y sign)",
        "platform": PLATFORM_HELP,
    }
)
def bundle(c, variant="cpu", out="", key="", platform=None):
    """Write one signed file for offline classrooms: the image, its lock, SBOM and labs, their sums."""
    bundles.make_command(InvokeRunner(c), variant, out, key, platform)


@dllab_task(
    help={
        "file": "the bundle `invoke bundle` wrote",
        "trust": "the signer's public key, or an OpenSSH allowed_signers file",
    }
)
def load(c, file, trust=""):
    """Verify a bundle's signature and every sum, then load its image into the engine."""
    bundles.load_command(InvokeRunner(c), file, trust)


SHELL_SCRIPTS = [
    "docker/dllab-start", "docker/profile.sh", "docker/apt-ensure", ".ci/run", ".ci/engine",
    ".ci/arm64", "benchmarks/gpu-run.sh",
]  # fmt: skip
DOCKERFILES = ["docker/Dockerfile", "docker/wheelhouse.Dockerfile", "docker/label.Dockerfile"]
LINTERS = {
    "ruff": ["ruff", "check", "."],
    "ruff format": ["ruff", "format", "--check", "."],
    "hadolint": ["hadolint", *DOCKERFILES],
    "shellcheck": ["shellcheck", *SHELL_SCRIPTS],
    "locks": [sys.executable, "-m", "dllab.locks", "check"],
    "mypy": [sys.executable, "-m", "mypy"],
}


@task
def lint(c):
    """Run every check that needs no engine: ruff, hadolint, shellcheck, the locks, mypy."""
    failed = [name for name, cmd in LINTERS.items() if c.run(quote(cmd), warn=True, pty=False).failed]  # fmt: skip
    if failed:
        raise Exit(f"dllab: lint failed: {', '.join(failed)} (see above)", code=1)


ns = Collection(
    lock, wheelhouse, build, lab, tensorboard, test, doctor, bench, clean, train, hub,
    hub_remove_volumes, progress, verify, sbom, bundle, load, publish, lint,
)  # fmt: skip
ns.configure({"run": {"echo": True}})

if __name__ == "__main__":  # `python3 tasks.py lab`: the same tasks as `invoke lab`
    from invoke import Program

    Program(namespace=ns, binary="python3 tasks.py", name="dllab").run()
