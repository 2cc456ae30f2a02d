"""`invoke hub` (`python -m dllab.hub start|stop|remove-volumes|reset-admin-password`): JupyterHub
+ DockerSpawner for a class, on 127.0.0.1.

Every hub is its owner's: its name (`dllab-hub-<uid>-<checkout>[-<instance>]`) names its
learners' containers and volumes, its network and its state folder, and every engine object
carries the owner, checkout and instance labels, so `stop` and `remove-volumes` act on this
checkout's and instance's hub alone. The operator makes the admin: its password is generated
into a 0600 file in the state folder (0700), never shown; sign-up under the admin's name is
refused (src/dllab/hubauth.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dllab import accounts, containers, devices, gpus, images, private, variants
from dllab.containers import Owner
from dllab.errors import Parser, UserError, report, task_command
from dllab.runner import Runner
from dllab.variants import ROOT

DEPLOY = ROOT / "deploy" / "jupyterhub"
REQUIREMENTS = DEPLOY / "requirements.txt"
CONFIG = DEPLOY / "jupyterhub_config.py"
PROXY_PACKAGE = DEPLOY / "proxy"
DEFAULT_PORT = 8000
DEFAULT_ADMIN = "teacher"
# JupyterHub user names as a hub for a class needs them: short, ASCII, safe in container names.
ADMIN_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
START_TIMEOUT = 90.0  # seconds until the hub's API must answer
SECRETS = ("api_token", "admin-password", "jupyterhub_cookie_secret", "jupyterhub.sqlite",
           "hub.log", "uids.json", "hub.json")  # fmt: skip


def name() -> str:
    """This checkout's and instance's hub: the prefix of everything it makes on the engine."""
    return containers.name("hub", Owner.current())


def labels(**more: str) -> dict[str, str]:
    """What every engine object of this hub carries (`dllab.hub`: its name)."""
    return {**Owner.current().labels(), "dllab.role": "hub", "dllab.hub": name(), **more}


def filters() -> list[str]:
    return Owner.current().filters(**{"dllab.role": "hub", "dllab.hub": name()})


@dataclass(frozen=True)
class Paths:
    """Where the hub's software (venv, proxy: shared by a checkout's hubs) and its state (db,
    secrets, pid, log: one folder per instance) live."""

    venv: Path
    state: Path

    @classmethod
    def default(cls) -> Paths:
        env = os.environ.get
        own = ROOT / (f".hub-{containers.instance()}" if containers.instance() else ".hub")
        return cls(
            venv=Path(env("DLLAB_HUB_VENV") or ROOT / ".hub" / "venv"),
            state=Path(env("DLLAB_HUB_STATE") or own),
        )

    @property
    def jupyterhub(self) -> Path:
        return self.venv / "bin" / "jupyterhub"

    @property
    def proxy_prefix(self) -> Path:
        return self.venv / "node"

    @property
    def proxy(self) -> Path:
        return self.proxy_prefix / "node_modules" / ".bin" / "configurable-http-proxy"

    @property
    def installed(self) -> Path:
        """The digest of the requirements the venv was installed from."""
        return self.venv / ".dllab-requirements"

    @property
    def pid(self) -> Path:
        return self.state / "hub.pid"

    @property
    def info(self) -> Path:
        return self.state / "hub.json"

    @property
    def log(self) -> Path:
        return self.state / "hub.log"

    @property
    def token(self) -> Path:
        return self.state / "api_token"

    @property
    def admin_password(self) -> Path:
        return self.state / "admin-password"

    @property
    def uids(self) -> Path:
        return self.state / "uids.json"


# --- the commands, as argument lists --------------------------------------------------------------


def venv_command(paths: Paths) -> list[str]:
    return [sys.executable, "-m", "venv", str(paths.venv)]


def install_command(paths: Paths) -> list[str]:
    """The hub's own pinned, hashed requirements (not the lab's lock)."""
    return [
        str(paths.venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
        "--require-hashes", "--no-deps", "-r", str(REQUIREMENTS),
    ]  # fmt: skip


def proxy_command(paths: Paths) -> list[str]:
    """configurable-http-proxy from npm, at the package-lock's exact versions, into the venv."""
    return ["npm", "ci", "--silent", "--no-audit", "--no-fund", "--prefix", str(paths.proxy_prefix)]


def hub_command(paths: Paths) -> list[str]:
    return [str(paths.jupyterhub), "--config", str(CONFIG)]


# --- checks -------------------------------------------------------------------------------------


def check_variant(variant_name: str) -> variants.Variant:
    variant = variants.get(variant_name)
    if "docker" not in variant.runtimes:
        raise UserError(
            f"variant {variant_name} has no image for a hub ({variant.name} is native only): "
            f"choose one of {', '.join(v.name for v in variants.VARIANTS.values() if 'docker' in v.runtimes)}"
        )
    return variant


def check_admin(admin: str) -> str:
    if not ADMIN_NAME.fullmatch(admin):
        raise UserError(
            f"admin name {admin[:40]!r}{'...' if len(admin) > 40 else ''} is not allowed: use 1-32 "
            "lowercase ASCII letters, digits, '.', '_' or '-', starting with a letter"
        )
    return admin


def check_port(port: int) -> None:
    containers.port_number(port)
    if not containers.port_free(port):
        raise UserError(f"port {port} on 127.0.0.1 is busy: choose another with --port")


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def running_pid(paths: Paths) -> int | None:
    """The hub's pid if its pid file names a live jupyterhub; a stale file is a UserError."""
    if not paths.pid.exists():
        return None
    text = paths.pid.read_text().strip()
    pid = int(text) if text.isdigit() else 0
    if pid and b"jupyterhub" in _cmdline(pid):
        return pid
    raise UserError(
        f"stale pid file {paths.pid} (pid {text or '?'} is not a running hub): "
        f"remove it, then run this again"
    )


def gpu_ids() -> str:
    """The GPUs to hand out, one per learner's server: DLLAB_HUB_GPUS, else nvidia-smi's list."""
    return os.environ.get("DLLAB_HUB_GPUS") or ",".join(gpus.ids(devices.gpu_list())) or "0"


# --- start / stop / remove-volumes ----------------------------------------------------------------


def requirements_digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def ensure_software(run: Runner, paths: Paths) -> None:
    """The hub's venv (hashed requirements) and configurable-http-proxy, installed once."""
    if not paths.installed.exists() or paths.installed.read_text() != requirements_digest():
        print(f"dllab: installing the hub into {paths.venv}", file=sys.stderr)
        if not (paths.venv / "bin" / "python").exists():
            run.checked(venv_command(paths))
        run.checked(install_command(paths))
        if not run.dry:
            paths.installed.write_text(requirements_digest())
    if not paths.proxy.exists():
        if not shutil.which("npm"):
            raise UserError("npm is missing: install Node.js >= 20 (configurable-http-proxy needs it)")  # fmt: skip
        print(f"dllab: installing configurable-http-proxy into {paths.proxy_prefix}", file=sys.stderr)  # fmt: skip
        if not run.dry:
            paths.proxy_prefix.mkdir(parents=True, exist_ok=True)
            for file in ("package.json", "package-lock.json"):
                shutil.copy(PROXY_PACKAGE / file, paths.proxy_prefix / file)
        run.checked(proxy_command(paths))


def ensure_network(run: Runner, network: str) -> str:
    """The hub network (made if missing) and the host's address on it."""
    done = run(containers.gateway_command(network))
    if not done.ok:
        run.checked(containers.network_command(network, labels()))
        done = run(containers.gateway_command(network))
    gateway = done.out.strip()
    if not run.dry and (not done.ok or not gateway):
        raise UserError(f"docker network {network} has no gateway address: remove it, then run this again")  # fmt: skip
    return gateway


def private_state(paths: Paths) -> None:
    """The state folder 0700 and its secrets, database and log 0600, also where an older dllab
    (or a umask) left them readable by others."""
    private.folder(paths.state)
    (paths.state / ".gitignore").write_text("*\n")  # software, database, secrets: never in git
    for file in SECRETS:
        path = paths.state / file
        if path.exists() and not path.is_symlink() and path.stat().st_mode & 0o077:
            path.chmod(0o600)


def secret(path: Path, make) -> str:
    """The secret in `path`, made (0600) with `make()` the first time."""
    if not path.exists():
        private.write(path, make() + "\n")
    return path.read_text().strip()


def api(url: str, token: str | None = None, method: str = "GET", timeout: float = 5.0):
    """One hub REST call; the decoded JSON (or None for an empty body)."""
    request = urllib.request.Request(url, method=method)
    if token:
        request.add_header("Authorization", f"token {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
    return json.loads(body) if body else None


def hub_env(
    paths: Paths, variant: variants.Variant, port: int, admin: str, gateway: str, gpu: bool
) -> dict[str, str]:
    """What jupyterhub_config.py reads: the DLLAB_HUB_* settings for this start."""
    return {
        "DLLAB_HUB_VARIANT": variant.name,
        "DLLAB_HUB_IMAGE": variant.image,
        "DLLAB_HUB_PORT": str(port),
        "DLLAB_HUB_ADMIN": admin,
        "DLLAB_HUB_ADMIN_PASSWORD_FILE": str(paths.admin_password),
        "DLLAB_HUB_STATE": str(paths.state),
        "DLLAB_HUB_NAME": name(),
        "DLLAB_HUB_IP": gateway,
        "DLLAB_HUB_API_PORT": str(containers.any_free_port(gateway)),
        "DLLAB_HUB_PROGRESS_PORT": str(containers.any_free_port(gateway)),  # the progress service
        "DLLAB_HUB_PROXY_API_PORT": str(containers.any_free_port()),
        "DLLAB_HUB_PROXY": str(paths.proxy),
        "DLLAB_HUB_API_TOKEN": paths.token.read_text().strip() if paths.token.exists() else "",
        "DLLAB_HUB_GPU": "1" if gpu else "0",
        **({"DLLAB_HUB_GPUS": gpu_ids()} if gpu else {}),
    }


def start(
    run: Runner, variant_name: str, port: int, admin: str, paths: Paths, build: bool = False
) -> str:
    """Start the hub in the background; return its URL once its API answers. Every input is
    checked before anything is made; the image is pulled or built first where it is missing
    (`build`: built here, never pulled), so learners' servers never wait for one."""
    variant = check_variant(variant_name)
    check_admin(admin)
    hub = name()  # DLLAB_INSTANCE is checked here
    if paths.state.exists() and (pid := running_pid(paths)):
        url = json.loads(paths.info.read_text())["url"] if paths.info.exists() else "?"
        raise UserError(f"a hub is already running (pid {pid}, {url}): stop it with `{task_command('hub', '--stop')}`")  # fmt: skip
    check_port(port)
    info = containers.check_engine(run)
    images.ensure(run, variant, variants.docker_platform(variant), build)
    gpu = containers.gpu_runtime(info, variant)
    if variant.gpu_runtime and not gpu:
        print(f"dllab: the engine has no {variant.gpu_runtime} runtime: learners get {variant.image} without a GPU", file=sys.stderr)  # fmt: skip
    if paths.uids.exists():
        accounts.Allocations(paths.uids, accounts.hub_ids(hub)).check()
    if not run.dry:
        private_state(paths)
    ensure_software(run, paths)
    gateway = ensure_network(run, f"{hub}-net")
    if run.dry:
        run.start(hub_command(paths))
        return f"http://127.0.0.1:{port}/hub/"
    secret(paths.token, lambda: secrets.token_hex(32))
    secret(paths.admin_password, lambda: secrets.token_urlsafe(18))
    env = {**os.environ, **hub_env(paths, variant, port, admin, gateway, gpu)}
    env["PATH"] = f"{paths.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    fd = os.open(paths.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "ab") as log:
        # umask 077: the database, cookie secret and proxy pid JupyterHub writes are 0600 too.
        process = run.start(
            hub_command(paths), echo=True, cwd=paths.state, env=env, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, umask=0o077,
        )  # fmt: skip
    assert process is not None
    private.write(paths.pid, str(process.pid))
    url = f"http://127.0.0.1:{port}/hub/"
    private.write(paths.info, json.dumps({"url": url, "variant": variant.name, "admin": admin}))
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            paths.pid.unlink(missing_ok=True)
            raise UserError(f"the hub exited at start (code {process.returncode}): see {paths.log}")  # fmt: skip
        try:
            api(f"{url}api/", timeout=2)
            return url
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    _terminate(process.pid)
    paths.pid.unlink(missing_ok=True)
    raise UserError(f"the hub's API did not answer within {START_TIMEOUT:.0f} s: see {paths.log}")


def _terminate(pid: int, timeout: float = 60.0) -> None:
    """SIGTERM the hub (it stops its servers and its proxy), then SIGKILL after `timeout`."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it where it is our child (tests)
        if not Path(f"/proc/{pid}").exists() or b"Z" in _state(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # the hub leads its process group (its proxy too)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _state(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().split(b") ", 1)[1][:1]
    except (OSError, IndexError):
        return b""


def stop(run: Runner, paths: Paths) -> int:
    """Stop this hub and its learners' containers; never a volume. The containers removed."""
    hub = name()
    pid = running_pid(paths) if paths.state.exists() else None
    if pid:
        _terminate(pid)
    paths.pid.unlink(missing_ok=True)
    # The hub stops its proxy without waiting for it: wait here, so a restart finds the port free.
    proxy = paths.state / "jupyterhub-proxy.pid"
    text = proxy.read_text().strip() if proxy.exists() else ""
    if text.isdigit() and b"configurable-http-proxy" in _cmdline(int(text)):
        _terminate(int(text), timeout=10)
    proxy.unlink(missing_ok=True)
    removed = 0
    if containers.engine_answers(run):
        if ids := run(containers.list_command(filters())).out.split():
            run(containers.remove_command(*ids))
            removed = len(ids)
        if networks := run(containers.networks_command(filters())).out.split():
            run(containers.remove_networks_command(*networks))
    if not pid:
        raise UserError(f"no hub of yours is running here ({hub}; removed {removed} leftover learner containers)")  # fmt: skip
    return removed


def volumes(run: Runner) -> list[tuple[str, str]]:
    """(volume, learner) of each of this hub's learners' work volumes."""
    lines = run.checked(containers.volumes_command(filters())).splitlines()
    return [(vol, learner) for vol, _, learner in (line.partition("\t") for line in lines if line)]


def remove_volumes(run: Runner, yes: bool, paths: Paths | None = None) -> list[str]:
    """Delete this hub's learners' work volumes, listed first; refused while the hub runs."""
    paths = paths or Paths.default()
    containers.check_engine(run)
    servers = run(containers.list_command(filters())).out.split()
    if (paths.state.exists() and running_pid(paths)) or servers:
        raise UserError(f"this hub is running: stop it first with `{task_command('hub', '--stop')}`")  # fmt: skip
    found = volumes(run)
    if not found:
        print(f"no learner volumes of this hub ({name()}) to delete")
        return []
    for vol, learner in found:
        print(f"{'deleting' if yes else 'would delete'} volume {vol} ({learner or '?'}'s /work)")
    if not yes:
        raise UserError(f"deleting {len(found)} volumes loses those learners' work: pass --yes to delete them")  # fmt: skip
    run.checked(containers.remove_volumes_command(*(vol for vol, _ in found)))
    return [vol for vol, _ in found]


def reset_admin_password(run: Runner, paths: Paths | None = None) -> int:
    """A new admin password, in the same 0600 file; the hub takes it at the admin's next login."""
    paths = paths or Paths.default()
    if not paths.admin_password.exists():
        raise UserError(f"no hub has been started here yet ({paths.state}): start one with `{task_command('hub')}`")  # fmt: skip
    run.show(["dllab", "new admin password", "->", str(paths.admin_password)])
    if not run.dry:
        private.write(paths.admin_password, secrets.token_urlsafe(18) + "\n")
    print(f"the admin's new password is in {paths.admin_password} (readable by you alone)")
    return 0


# --- the command line ---------------------------------------------------------------------------


def start_command(run: Runner, variant: str, port: int, admin: str, build: bool = False) -> int:
    paths = Paths.default()
    url = start(run, variant, port, admin, paths, build)
    print(f"JupyterHub: {url}  (log: {paths.log})")
    print(f"this hub: {name()} (its learners' containers and volumes start with that name)")
    print(f"log in as {admin}: the password is in {paths.admin_password} (readable by you alone)")
    print(f"learners sign up at {url}signup; approve them at {url}authorize")
    return 0


def stop_command(run: Runner) -> int:
    removed = stop(run, Paths.default())
    print(f"hub stopped; {removed} learner containers removed; volumes kept")
    return 0


def parser() -> Parser:
    p = Parser(prog="python -m dllab.hub", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="action", required=True)
    s = sub.add_parser("start", help="start JupyterHub (DockerSpawner) on 127.0.0.1 in the background")  # fmt: skip
    s.add_argument("--variant", default="cpu", help="image each learner gets: dllab:<variant>")
    s.add_argument("--port", default=str(DEFAULT_PORT), help="port on 127.0.0.1 (default 8000)")
    s.add_argument("--admin", default=DEFAULT_ADMIN, help=f"the admin's name (default {DEFAULT_ADMIN})")  # fmt: skip
    s.add_argument("--build", action="store_true", help="build the image here, never pulling it")
    sub.add_parser("stop", help="stop the hub and every learner's server (volumes stay)")
    r = sub.add_parser("remove-volumes", help="delete every learner's work volume (asks for --yes)")
    r.add_argument("--yes", action="store_true", help="really delete them")
    sub.add_parser("reset-admin-password", help="a new admin password, in the same private file")
    return p


def main(argv: list[str] | None = None) -> int:
    run = Runner()
    try:
        args = parser().parse_args(argv)
        if args.action == "start":
            port = containers.port_number(args.port)
            return start_command(run, args.variant, port, args.admin, args.build)
        if args.action == "stop":
            return stop_command(run)
        if args.action == "reset-admin-password":
            return reset_admin_password(run)
        remove_volumes(run, args.yes)
        return 0
    except UserError as exc:
        return report(exc)


if __name__ == "__main__":
    sys.exit(main())
