"""dllab tasks: `invoke --list`; every side effect goes through c.run, so `invoke --dry TASK` shows it."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import stat
import sys
import time
from pathlib import Path


def _bootstrap() -> None:
    """`python3 tasks.py TASK` from a fresh clone: make .venv with the tasks' tools (invoke, the
    Docker SDK, uv, pytest) on first use, then run the task with that environment's Python."""
    venv = Path(__file__).resolve().parent / ".venv"
    if Path(sys.prefix).resolve() == venv.resolve() or os.environ.get("DLLAB_BOOTSTRAPPED"):
        return
    if sys.version_info < (3, 11):  # noqa: UP036 (a fresh machine may have an older python3)
        sys.exit(f"dllab: the tasks need Python 3.11 or newer, this is {sys.version.split()[0]}")
    python = venv / "bin" / "python"
    if not (venv / "bin" / "invoke").exists():
        print(f"dllab: first run: making {venv} with the tasks' tools (pip install -e '.[dev]')",
              file=sys.stderr, flush=True)  # fmt: skip
        import subprocess

        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check",
                        "-e", f"{venv.parent}[dev]"], check=True)  # fmt: skip
    os.environ["DLLAB_BOOTSTRAPPED"] = "1"  # once: never a loop, whatever .venv turns out to be
    os.execv(python, [str(python), __file__, *sys.argv[1:]])


if __name__ == "__main__":  # before `import invoke`, which a fresh machine does not have yet
    _bootstrap()

from invoke import Collection, Exit, task  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent / "src"))  # tasks work before dllab is installed

from dllab import containers, locks, variants  # noqa: E402
from dllab.containers import Owner, quote  # noqa: E402
from dllab.errors import UserError  # noqa: E402

ROOT = Path(__file__).parent
PYTHON = sys.executable
VARIANT_HELP = f"one of {', '.join(variants.VARIANTS)}"


def _fail(message: str, code: int = 2) -> Exit:
    """The one way a task stops on bad input: one `dllab: ...` line and an exit code."""
    return Exit(f"dllab: {message}", code=code)


def _variant(name: str, runtime: str | None = None) -> tuple[variants.Variant, str]:
    """The variant and runtime to use, or Exit with one actionable line."""
    try:
        variant = variants.get(name)
        return variant, variants.check_runtime(variant, runtime)
    except UserError as exc:
        raise _fail(str(exc)) from None


def _port(value, what: str = "--port") -> int:
    """A port the caller may publish on, or Exit with one line. Numeric flags default to strings,
    so that invoke passes `abc` here for one line instead of failing its own int() cast with a
    traceback."""
    try:
        return containers.port_number(value, what)
    except UserError as exc:
        raise _fail(str(exc)) from None


def _quiet(c) -> containers.Runner:
    """c.run as the engine checks run commands: quietly, a failure being an answer."""

    def run(cmd: list[str]) -> tuple[int, str]:
        result = c.run(quote(cmd), hide=True, warn=True)
        return result.exited, result.stdout

    return run


def _engine(c) -> dict:
    """The engine's `docker info`, or Exit with how to start one."""
    try:
        return containers.check_engine(_quiet(c))
    except UserError as exc:
        raise _fail(str(exc)) from None


def _ready_image(c, variant: variants.Variant, platform: str | None = None) -> bool:
    """Check the engine and image; say whether to pass the GPUs."""
    info = _engine(c)
    try:
        containers.check_image(variant, platform, run=_quiet(c))
    except UserError as exc:
        raise _fail(str(exc)) from None
    if not variant.gpu_args:
        return False
    # Devices passed as they are (e.g. --device) need no runtime.
    return not variant.gpu_runtime or containers.gpu_runtime(info, variant)


def _writable_by(path: Path, owner: Owner) -> bool:
    """Whether `owner` may create files in the folder `path` (by its mode bits)."""
    st = path.stat()
    if st.st_uid == owner.uid:
        bits = stat.S_IWUSR | stat.S_IXUSR
    elif st.st_gid == owner.gid:
        bits = stat.S_IWGRP | stat.S_IXGRP
    else:
        bits = stat.S_IWOTH | stat.S_IXOTH
    return st.st_mode & bits == bits


def _work_dir(c, work: str, owner: Owner) -> Path:
    """The work folder, made for `owner` if it is new; an existing one is used as it is, never
    chowned, and refused if `owner` cannot write it."""
    path = Path(work).expanduser().absolute()
    if path.exists():
        if not path.is_dir():
            raise _fail(f"--work {str(path)!r} is not a folder")
        if not _writable_by(path, owner):
            raise _fail(
                f"the lab user (UID {owner.uid}) cannot write {str(path)!r}: "
                "choose another folder with --work, or give that user write access"
            )
        return path
    c.run(quote(["mkdir", "-p", "--", str(path)]))
    if os.getuid() == 0:  # made by root for someone else: theirs, since dllab created it
        c.run(quote(["chown", owner.user, "--", str(path)]))
    return path


def _revision(c) -> str:
    result = c.run(quote(["git", "rev-parse", "--short", "HEAD"]), hide=True, warn=True)
    return (result.stdout.strip() if result.ok else "") or "unknown"


def _lab_state(name: str) -> Path:
    return containers.state_dir() / f"{name}.json"


def _running(c, name: str) -> bool | None:
    """True if the container runs, False if it exists stopped, None if there is none."""
    result = c.run(
        quote(["docker", "container", "inspect", "--format", "{{.State.Running}}", name]),
        hide=True,
        warn=True,
    )
    return None if not result.ok else result.stdout.strip() == "true"


def _wait_ready(c, name: str, timeout: float = 60) -> None:
    """Wait until the container's own HEALTHCHECK passes; show its logs if it dies or hangs."""
    probe = None
    inspect = c.run(
        quote(["docker", "inspect", "--format", "{{json .Config.Healthcheck.Test}}", name]),
        hide=True,
        warn=True,
    )
    if inspect.ok and inspect.stdout.strip().startswith("["):
        probe = quote(containers.health_probe(name, json.loads(inspect.stdout)))
    deadline = time.monotonic() + timeout
    while probe and time.monotonic() < deadline:
        if c.run(probe, hide=True, warn=True).ok:
            return
        if not _running(c, name):
            break
        time.sleep(0.25)
    if probe:
        c.run(quote(["docker", "logs", "--tail", "20", name]), warn=True)
        raise _fail(f"JupyterLab did not become ready: see `docker logs {name}`", code=1)


@task(
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
    cmd = [PYTHON, "-m", "dllab.locks", "check" if check else "compile"]
    if resolve:
        cmd.append("--resolve")
    if variant:
        cmd += ["--variant", _variant(variant)[0].name]
    for link in find_links or []:
        cmd += ["--find-links", link]
    if as_of:
        cmd += ["--as-of", as_of]
    result = c.run(quote(cmd), warn=True)
    if result.failed:
        raise Exit(code=result.exited)


def _platform(variant: variants.Variant, platform: str | None) -> str:
    """The lock platform of a Docker task: --platform, else what this machine's Docker runs."""
    try:
        return variants.docker_platform(variant, platform)
    except UserError as exc:
        raise _fail(str(exc)) from None


PLATFORM_HELP = (
    "lock platform, e.g. linux-aarch64 (default: this machine's; another is tagged "
    "dllab:<variant>-<platform>)"
)


@task(help={"variant": VARIANT_HELP, "platform": PLATFORM_HELP})
def wheelhouse(c, variant="cpu", platform=None):
    """Download every wheel of a variant's lock, as a folder and an image, for offline builds."""
    chosen, _ = _variant(variant, "docker")
    platform = _platform(chosen, platform)
    index = variants.torch_index(chosen)
    # pip names each package as it goes, with a progress bar per download on a terminal.
    cmd = [
        PYTHON, "-m", "pip", "download", "--progress-bar", "on", "--no-deps", "--require-hashes",
        "--only-binary=:all:", "--python-version", variants.PYTHON_MINOR, "--implementation", "cp",
        "--abi", variants.PYTHON_ABI,
    ]  # fmt: skip
    for tag in variants.PLATFORMS[platform].wheel_tags:
        cmd += ["--platform", tag]
    if index:
        cmd += ["--extra-index-url", index]
    folder = containers.wheelhouse(chosen, platform)
    lock = chosen.lock(platform)
    wheels = containers.wheels_image(chosen, platform)
    _engine(c)
    # Kept when it holds these very locks' wheels: no download, and the same image ID, so the
    # frameworks' layer of the next build stays cached (a rebuilt one would redo it).
    label = '{{index .Config.Labels "' + containers.WHEELS_LOCK_LABEL + '"}}'
    held = c.run(
        quote(["docker", "image", "inspect", "--format", label, wheels]), hide=True, warn=True
    )
    if held.ok and held.stdout.strip() == containers.wheels_lock_digest(chosen, platform):
        print(f"dllab: {wheels} already holds the wheels of {lock.name} (and the SBOM tools'): "
              "nothing to download")  # fmt: skip
        return
    started = time.monotonic()
    needed = containers.wheel_locks(chosen, platform)  # the variant's, and the SBOM tools'
    print(f"dllab: downloading the {sum(len(locks.pins(each)) for each in needed)} wheels of "
          f"{' and '.join(each.name for each in needed)} into {folder} (those already there are "
          "kept)", file=sys.stderr, flush=True)  # fmt: skip
    # One download per lock: the SBOM tools' lock may pin another version of a shared package.
    for each in needed:
        c.run(quote([*cmd, "-r", str(each), "-d", str(folder)]), pty=sys.stdout.isatty())
    # Wheels of an older lock go: the image holds these locks' wheels, exactly, as a fresh
    # clone's would, so the two share the frameworks' layer in the build cache.
    pins = {f"{name}=={version}" for each in needed for name, version in locks.pins(each).items()}
    stale = [str(w) for w in sorted(folder.glob("*.whl"))
             if f"{locks.canonical(w.name.split('-')[0])}=={w.name.split('-')[1]}" not in pins]  # fmt: skip
    if stale:
        c.run(quote(["rm", "-f", "--", *stale]))
    c.run(quote(containers.wheels_image_command(chosen, platform)))
    if not c.config.run.dry:
        files = list(folder.glob("*.whl"))
        size = sum(wheel.stat().st_size for wheel in files)
        print(f"dllab: wheelhouse {chosen.name}-{platform}: {len(files)} wheels, "
              f"{size / 1e9:.2f} GB in {folder} and {wheels}, "
              f"in {_duration(time.monotonic() - started)}")  # fmt: skip


def _conda() -> str | None:
    """mamba or conda, where one is installed."""
    return next((tool for tool in ("mamba", "conda") if shutil.which(tool)), None)


def _native_env(c, variant: variants.Variant) -> None:
    """The native environment: conda/mamba from its conda file where one is installed, else a venv."""
    conda, env = _conda(), f"dllab-{variant.name}"
    editable = ["pip", "install", "--no-deps", "--no-build-isolation", "-e", "."]
    if conda and variant.conda_file:
        c.run(
            quote([conda, "env", "update", "--name", env, "--file", variant.conda_file, "--prune"])
        )
        c.run(quote([conda, "run", "--name", env, *editable]))
        return
    venv = f".venv-{variant.name}"
    lock = str(variant.lock(variants.host_platform()))
    c.run(quote([PYTHON, "-m", "venv", venv]))
    c.run(quote([f"{venv}/bin/pip", "install", "--require-hashes", "--no-deps", "-r", lock]))
    c.run(quote([f"{venv}/bin/pip", *editable[1:]]))


def _native(variant: variants.Variant, command: list[str]) -> str:
    """`command` run in the variant's native environment, with the variables it promises."""
    conda = _conda()
    if conda and variant.conda_file:
        return quote(
            [conda, "run", "--no-capture-output", "--name", f"dllab-{variant.name}", *command]
        )
    promised = (
        ("DLLAB_VARIANT", variant.name),
        ("DLLAB_ACCELERATOR", variant.accelerator),
        *variant.env,
    )
    program, *args = command
    return quote(
        ["env", *(f"{k}={v}" for k, v in promised), f".venv-{variant.name}/bin/{program}", *args]
    )


@task(
    help={
        "variant": VARIANT_HELP,
        "platform": PLATFORM_HELP,
        "offline": "build with no network, from the wheels `invoke wheelhouse` downloaded",
    }
)
def build(c, variant="cpu", platform=None, offline=False):
    """Build the dllab:<variant> image, streaming each step; metal builds the native environment."""
    chosen, runtime = _variant(variant)
    if runtime == "native":
        _native_env(c, chosen)
        return
    platform = _platform(chosen, platform)
    try:  # a corrupt or stale lock is refused before anything is built
        problem = locks.stale(chosen, platform)
    except UserError as exc:
        raise _fail(str(exc)) from None
    if problem:
        raise _fail(problem)
    _engine(c)
    wheels = containers.wheels_image(chosen, platform)
    if offline and not containers.image_exists(wheels, _quiet(c)):
        raise _fail(
            f"no {wheels} image for an offline build: run `invoke wheelhouse --variant {chosen.name}` first"
        )
    revision = _revision(c)
    c.run(quote(["mkdir", "-p", str(containers.image_ids_file(chosen, platform, revision).parent)]))
    started = time.monotonic()
    c.run(quote(containers.build_command(chosen, platform, revision, offline)), pty=False)
    # The second, short step: the venv tree hash the build recorded, as the image's label.
    c.run(quote([PYTHON, "-m", "dllab.provenance", "label", "--variant", chosen.name,
                 "--platform", platform, "--revision", revision]))  # fmt: skip
    if not c.config.run.dry:
        tag = containers.image_tag(chosen, platform)
        size = c.run(quote(["docker", "image", "inspect", "--format", "{{.Size}}", tag]),
                     hide=True, warn=True).stdout.strip()  # fmt: skip
        weight = f"{int(size) / 1e9:.2f} GB" if size.isdigit() else "size unknown"
        print(f"dllab: built {tag} ({revision}, {'offline' if offline else 'online'}): {weight}, "
              f"in {_duration(time.monotonic() - started)}")  # fmt: skip


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


@task(
    help={
        "variant": VARIANT_HELP,
        "port": "host port, on 127.0.0.1 (default 8888; the next free one if busy)",
        "work": "your work directory, mounted at /work (default ./work; never deleted)",
        "stop": "stop your running lab instead (gracefully: kernels shut down)",
        "platform": PLATFORM_HELP,
        "no_browser": "do not open the labs in your browser",
    }
)
def lab(c, variant="cpu", port="8888", work="work", stop=False, platform=None, no_browser=False):
    """Start JupyterLab with the labs, on 127.0.0.1 with a token; print its URL."""
    chosen, runtime = _variant(variant)
    port = _port(port)
    if runtime != "native":
        platform = _platform(chosen, platform)
    if runtime == "native":
        c.run(
            _native(
                chosen,
                [
                    "jupyter",
                    "lab",
                    "--ServerApp.root_dir=.",
                    f"--port={port}",
                    "--LabApp.default_url=/lab/tree/labs/README.md",
                ],
            )  # fmt: skip
        )
        return
    _engine(c)
    owner = Owner.current()
    name = containers.container_name(chosen, owner)
    state = _lab_state(name)
    running = _running(c, name)
    if stop:
        if running is None:
            print(f"no {chosen.name} lab of yours is running ({name})")
            return
        c.run(quote(["docker", "stop", "--time", "20", name]))
        c.run(quote(["docker", "rm", name]), hide=True)
        c.run(quote(["rm", "-f", str(state)]))
        return
    if running and state.exists():
        lab_info = json.loads(state.read_text())
        print(f"your {chosen.name} lab is already running: {lab_info['url']}")
        print(f"your work: {lab_info['work']}  (stop: invoke lab --stop --variant {chosen.name})")
        return
    image = containers.image_tag(chosen, platform)
    if not containers.image_exists(image, _quiet(c)):
        # First use: build it, from the wheelhouse when `invoke wheelhouse` made one.
        wheels = containers.wheels_image(chosen, platform)
        offline = containers.image_exists(wheels, _quiet(c))
        source = f"offline, from {wheels}" if offline else "downloading the frameworks"
        print(f"dllab: no {image} image yet: building it now, once ({source}; several minutes, "
              "each step shows)", file=sys.stderr, flush=True)  # fmt: skip
        build(c, variant=chosen.name, platform=platform, offline=offline)
    gpus = _ready_image(c, chosen, platform)
    if chosen.gpu_runtime and not gpus:
        raise _fail(
            f"the {chosen.name} lab needs the engine's {chosen.gpu_runtime} runtime (NVIDIA Container "
            f"Toolkit; none in `docker info`): install it and restart Docker, or use --variant cpu"
        )
    if running is not None:  # a stopped lab of ours: its container goes, the work stays
        c.run(quote(["docker", "rm", "--force", name]), hide=True)
    path = _work_dir(c, work, owner)  # a folder it cannot use is refused before anything else
    free = containers.free_port(port)
    if free is None:
        raise _fail(f"ports {port}-{port + 19} are all busy: choose another with --port")
    if free != port:
        print(f"port {port} is busy: using {free}", file=sys.stderr)
    token = secrets.token_urlsafe(24)
    # The token travels in docker's environment, never its argv (see containers.lab_command).
    c.run(
        quote(containers.lab_command(chosen, free, path, owner, name, gpus, platform)),
        hide="stdout",
        env={"JUPYTER_TOKEN": token},
    )
    _wait_ready(c, name)
    url = f"http://127.0.0.1:{free}/?token={token}"
    if c.config.run.dry:
        return
    # Remembered for `invoke tensorboard` and a second `invoke lab`; readable by you alone.
    state.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(state, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"url": url, "port": free, "token": token, "work": str(path)}, out)
    print(
        f"JupyterLab ({chosen.name}): {url}\nyour work: {path}  (stop: invoke lab --stop --variant {chosen.name})"
    )
    if not no_browser:
        _open_in_browser(state.with_suffix(".html"), url)


def _open_in_browser(page: Path, url: str) -> None:
    """Open the labs where a desktop is, as `jupyter lab` does: through a private page that
    redirects to the URL, so the token is on no browser's command line."""
    import webbrowser

    if not (
        sys.platform == "darwin" or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return
    fd = os.open(page, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f'<meta http-equiv="refresh" content="0; url={url}">\n')
    webbrowser.open(page.resolve().as_uri())


@task(
    help={
        "variant": f"run tests/env and the labs inside this variant ({VARIANT_HELP}); "
        "default: the host suite, with image tests when an engine answers",
        "pytest_args": "extra arguments for pytest",
        "platform": "with --variant: " + PLATFORM_HELP,
    }
)
def test(c, variant=None, pytest_args="", platform=None):
    """Run the tests: on this machine, or inside the <variant> environment expecting its accelerator."""
    extra = shlex.split(pytest_args)
    if platform and variant is None:
        raise _fail("--platform names an image: use it with --variant (e.g. --variant cpu)")
    if variant is None:
        c.run(quote([PYTHON, "-m", "pytest", *extra]), pty=False)
        return
    chosen, runtime = _variant(variant)
    suites = ["tests/env", "tests/labs"]
    if runtime == "native":
        c.run(_native(chosen, ["python", "-m", "pytest", *suites, *extra]))
        return
    platform = _platform(chosen, platform)
    gpus = _ready_image(c, chosen, platform)
    command = ["python", "-m", "pytest", "-p", "no:cacheprovider", *suites, *extra]
    options = ["--workdir", "/opt/dllab"]
    c.run(
        quote(
            containers.run_command(chosen, command, gpus=gpus, options=options, platform=platform)
        ),
        pty=False,
    )


@task(
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
    if platform and variant is None:
        raise _fail("--platform names an image: use it with --variant (e.g. --variant cpu)")
    flags = [*(["--expect", expect] if expect else []), *(["--train"] if train else []),
             *(["--json"] if json else [])]  # fmt: skip
    command = ["python", "-m", "dllab", "doctor", *flags]
    if variant is None:
        if not any(map(_importable, ("tensorflow", "torch", "jax"))):
            raise _fail(
                "no framework is installed here: they live in the image; ask it with "
                "`invoke doctor --variant cpu` (or install them here: pip install -e '.[cpu]')"
            )
        result = c.run(quote([PYTHON, *command[1:]]), warn=True, pty=False)
    else:
        chosen, runtime = _variant(variant)
        if runtime == "native":
            result = c.run(_native(chosen, command), warn=True, pty=False)
        else:
            platform = _platform(chosen, platform)
            gpus = _ready_image(c, chosen, platform)
            run = containers.run_command(chosen, command, gpus=gpus, platform=platform)
            result = c.run(quote(run), warn=True, pty=False)
    if result.failed:
        raise Exit(code=result.exited)


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


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
    flags = ["--quick"] if quick else []
    if variant is None:
        c.run(quote([PYTHON, "-m", "dllab", "bench", *flags]), pty=False)
        return
    chosen, runtime = _variant(variant, runtime)
    if runtime == "native":
        c.run(_native(chosen, ["python", "-m", "dllab", "bench", *flags]), pty=False)
        return
    platform = _platform(chosen, None)
    gpus = _ready_image(c, chosen, platform)
    owner = Owner.current()
    out = _work_dir(c, str(ROOT / ".bench"), owner)
    options = [*containers.bind(out, "/work/.bench"), "--env",
               f"DLLAB_LOCK_DIGEST={locks.digest(chosen, platform)}"]  # fmt: skip
    command = ["python", "-m", "dllab", "bench", *flags, "--out", "/work/.bench"]
    c.run(
        quote(containers.run_command(chosen, command, owner, gpus, options, platform=platform)),
        pty=False,
    )
    if environment:
        c.run(
            quote(
                [
                    PYTHON,
                    "-m",
                    "dllab.envbench",
                    "--variant",
                    chosen.name,
                    "--revision",
                    _revision(c),
                ]
            ),
            pty=False,
        )


@task(help={"variant": VARIANT_HELP})
def tensorboard(c, variant="cpu"):
    """Print the URL of TensorBoard for the labs' logs (WORK/runs), behind your lab's login."""
    chosen, runtime = _variant(variant)
    if runtime == "native":
        c.run(_native(chosen, ["tensorboard", "--logdir", "work/runs", "--host", "127.0.0.1"]))
        return
    _engine(c)
    name = containers.container_name(chosen, Owner.current())
    state = _lab_state(name)
    if not _running(c, name) or not state.exists():
        raise _fail(
            f"TensorBoard runs inside your lab, and no {chosen.name} lab of yours is running: "
            f"`invoke lab --variant {chosen.name}` first"
        )
    info = json.loads(state.read_text())
    print(
        f"TensorBoard ({chosen.name}): http://127.0.0.1:{info['port']}/tensorboard/?token={info['token']}"
    )


@task(help={"variant": VARIANT_HELP + " (default: all)"})
def clean(c, variant=None):
    """Remove your dllab containers and the images this checkout built; your work stays."""
    chosen = (
        [_variant(variant)[0]]
        if variant
        else [v for v in variants.VARIANTS.values() if v.dockerized]
    )
    _engine(c)
    owner = Owner.current()
    for v in chosen:
        listed = c.run(
            quote(
                [
                    "docker",
                    "ps",
                    "--all",
                    "--quiet",
                    *owner.filters(),
                    "--filter",
                    f"label=dllab.variant={v.name}",
                ]
            ),  # fmt: skip
            hide=True,
            warn=True,
        )
        for container in listed.stdout.split():
            c.run(quote(["docker", "stop", container]), hide=True, warn=True)
            c.run(quote(["docker", "rm", container]), hide=True, warn=True)
        # Only tags that point at an image this checkout's `invoke build` recorded: never an
        # image built FROM it, a `docker commit`, or another checkout's build.
        built = {
            path.read_text().strip()
            for path in (containers.state_dir() / "images").glob(f"{v.name}-*.id")
        }
        tags = c.run(
            quote(
                [
                    "docker",
                    "image",
                    "ls",
                    "--no-trunc",
                    "--format",
                    "{{.Repository}}:{{.Tag}} {{.ID}}",
                    v.image.split(":")[0],
                ]
            ),  # fmt: skip
            hide=True,
            warn=True,
        )
        for line in tags.stdout.splitlines():
            tag, _, image_id = line.partition(" ")
            own_tag = tag == v.image or tag.startswith(f"{v.image}-")
            if own_tag and image_id in built:
                c.run(quote(["docker", "rmi", tag]))


@task(
    help={
        "variant": VARIANT_HELP,
        "workers": "number of workers, one container each (1 = a single process)",
        "framework": "torch, tensorflow or keras-jax",
        "epochs": "passes over the data",
    }
)
def train(c, variant="cpu", workers="2", framework="torch", epochs="3"):
    """Train one model data-parallel on N workers with the framework's own engine; compare them."""
    chosen, _ = _variant(variant, "docker")
    cmd = [PYTHON, "-m", "dllab.workers", "--variant", chosen.name, "--workers", str(workers),
           "--framework", framework, "--epochs", str(epochs)]  # fmt: skip
    result = c.run(quote(cmd), warn=True, pty=False)
    if result.failed:
        raise Exit(code=result.exited)


@task(
    help={
        "variant": VARIANT_HELP,
        "port": "hub port on 127.0.0.1 (default 8000)",
        "admin": "the admin's user name (approves sign-ups)",
        "stop": "stop the hub and its users' servers; their volumes stay",
    }
)
def hub(c, variant="cpu", port="8000", admin="teacher", stop=False):
    """Serve dllab:<variant> to a class with JupyterHub + DockerSpawner on 127.0.0.1."""
    if stop:
        cmd = [PYTHON, "-m", "dllab.hub", "stop"]
    else:
        chosen, _ = _variant(variant, "docker")
        cmd = [PYTHON, "-m", "dllab.hub", "start", "--variant", chosen.name,
               "--port", str(_port(port)), "--admin", admin]  # fmt: skip
    result = c.run(quote(cmd), warn=True, pty=False)
    if result.failed:
        raise Exit(code=result.exited)


@task(name="hub-remove-volumes", help={"yes": "really delete every hub user's /work volume"})
def hub_remove_volumes(c, yes=False):
    """Delete the hub users' work volumes (lists them; needs --yes)."""
    result = c.run(
        quote([PYTHON, "-m", "dllab.hub", "remove-volumes", *(["--yes"] if yes else [])]),
        warn=True,
        pty=False,
    )
    if result.failed:
        raise Exit(code=result.exited)


def _module(c, module: str, *args: str, echo: bool = True) -> None:
    """Run `python -m dllab.<module> ARGS`, ending as it ends (its one-line errors are its own)."""
    cmd = quote([PYTHON, "-m", f"dllab.{module}", *args])
    result = c.run(cmd, warn=True, pty=False, echo=echo)
    if result.failed:
        raise Exit(code=result.exited)


def _image_args(variant: str, platform: str | None) -> list[str]:
    return ["--variant", variant, *(["--platform", platform] if platform else [])]


@task(help={"variant": VARIANT_HELP, "platform": PLATFORM_HELP})
def verify(c, variant="cpu", platform=None):
    """Recompute the image's /opt/venv tree hash inside it; compare with its build's record and label."""
    _module(c, "provenance", "verify", *_image_args(variant, platform))


@task(help={"variant": VARIANT_HELP, "platform": PLATFORM_HELP})
def sbom(c, variant="cpu", platform=None):
    """Print the image's CycloneDX SBOM (/opt/dllab/provenance/sbom.cdx.json)."""
    # No echo of the command: stdout is the SBOM alone, for `invoke sbom > sbom.cdx.json`.
    _module(c, "provenance", "sbom", *_image_args(variant, platform), echo=False)


@task(
    help={
        "variant": VARIANT_HELP,
        "out": "the bundle file to write",
        "key": "your OpenSSH private key, to sign the bundle's manifest (ssh-keygen -Y sign)",
        "platform": PLATFORM_HELP,
    }
)
def bundle(c, variant="cpu", out=None, key=None, platform=None):
    """Write one signed file for offline classrooms: the image, its lock, SBOM and labs, their sums."""
    paths = ["--out", out or "", "--key", key or ""]
    _module(c, "bundle", "make", *_image_args(variant, platform), *paths)


@task(
    help={
        "file": "the bundle `invoke bundle` wrote",
        "trust": "the signer's public key, or an OpenSSH allowed_signers file",
    }
)
def load(c, file, trust=None):
    """Verify a bundle's signature and every sum, then load its image into the engine."""
    _module(c, "bundle", "load", file, "--trust", trust or "")


SHELL_SCRIPTS = [
    "docker/dllab-start",
    "docker/profile.sh",
    "docker/apt-ensure",
    ".ci/run",
    ".ci/engine",
    ".ci/arm64",
]
DOCKERFILES = ["docker/Dockerfile", "docker/wheelhouse.Dockerfile", "docker/label.Dockerfile"]


@task
def lint(c):
    """Run every check that needs no engine: ruff, hadolint, shellcheck, the locks, mypy."""
    checks = {
        "ruff": ["ruff", "check", "."],
        "ruff format": ["ruff", "format", "--check", "."],
        "hadolint": ["hadolint", *DOCKERFILES],
        "shellcheck": ["shellcheck", *SHELL_SCRIPTS],
        "locks": [PYTHON, "-m", "dllab.locks", "check"],
        "mypy": [PYTHON, "-m", "mypy"],
    }
    failed = [
        name for name, cmd in checks.items() if c.run(quote(cmd), warn=True, pty=False).failed
    ]
    if failed:
        raise _fail(f"lint failed: {', '.join(failed)} (see above)", code=1)


ns = Collection(
    lock, wheelhouse, build, lab, tensorboard, test, doctor, bench, clean, train, hub,
    hub_remove_volumes, lint, verify, sbom, bundle, load,
)  # fmt: skip
ns.configure({"run": {"echo": True}})

if __name__ == "__main__":  # `python3 tasks.py lab`: the same tasks as `invoke lab`
    from invoke import Program

    Program(namespace=ns, binary="python3 tasks.py", name="dllab").run()
