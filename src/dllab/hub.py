"""`python -m dllab.hub start|stop|remove-volumes`: JupyterHub + DockerSpawner for a class, on 127.0.0.1."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
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

from dllab import containers, variants
from dllab.errors import UserError, report
from dllab.variants import ROOT

DEPLOY = ROOT / "deploy" / "jupyterhub"
REQUIREMENTS = DEPLOY / "requirements.txt"
CONFIG = DEPLOY / "jupyterhub_config.py"
PROXY_PACKAGE = DEPLOY / "proxy"
DEFAULT_PORT = 8000
DEFAULT_ADMIN = "admin"
START_TIMEOUT = 90.0  # seconds until the hub's API must answer


@dataclass(frozen=True)
class Paths:
    """Where the hub's software (venv, proxy) and its state (db, secrets, pid, log) live."""

    venv: Path
    state: Path

    @classmethod
    def default(cls) -> Paths:
        env = os.environ.get
        state = Path(env("DLLAB_HUB_STATE") or ROOT / ".hub")
        return cls(venv=Path(env("DLLAB_HUB_VENV") or state / "venv"), state=state)

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


def prefix() -> str:
    """Names and labels of every engine object the hub makes: `<prefix>-...`, dllab.hub=<prefix>."""
    return os.environ.get("DLLAB_HUB_PREFIX", "dllab-hub")


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


def network_command(name: str) -> list[str]:
    """The learners' bridge; where the engine enforces it (iptables), no learner reaches another's
    container directly: only the proxy and the hub, from the host, do."""
    return [
        "docker", "network", "create", "--driver", "bridge", "--label", f"dllab.hub={prefix()}",
        "--opt", "com.docker.network.bridge.enable_icc=false", name,
    ]  # fmt: skip


def hub_command(paths: Paths) -> list[str]:
    return [str(paths.jupyterhub), "--config", str(CONFIG)]


def containers_command() -> list[str]:
    return ["docker", "ps", "--all", "--quiet", "--filter", f"label=dllab.hub={prefix()}"]


def volumes_command() -> list[str]:
    return [
        "docker", "volume", "ls", "--filter", f"label=dllab.hub={prefix()}",
        "--format", '{{.Name}}\t{{.Label "dllab.owner"}}',
    ]  # fmt: skip


# --- checks -------------------------------------------------------------------------------------


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


def check_variant(name: str) -> variants.Variant:
    variant = variants.get(name)
    if "docker" not in variant.runtimes:
        raise UserError(
            f"variant {name} has no image for a hub ({variant.name} is native only): "
            f"choose one of {', '.join(v.name for v in variants.VARIANTS.values() if 'docker' in v.runtimes)}"
        )
    return variant


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
    if os.environ.get("DLLAB_HUB_GPUS"):
        return os.environ["DLLAB_HUB_GPUS"]
    if shutil.which("nvidia-smi"):
        listed = _run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"])
        ids = [line.strip() for line in listed.stdout.splitlines() if line.strip().isdigit()]
        if listed.returncode == 0 and ids:
            return ",".join(ids)
    return "0"


# --- start / stop / remove-volumes ----------------------------------------------------------------


def requirements_digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def ensure_software(paths: Paths) -> None:
    """The hub's venv (hashed requirements) and configurable-http-proxy, installed once."""
    if not paths.installed.exists() or paths.installed.read_text() != requirements_digest():
        print(f"dllab: installing the hub into {paths.venv}", file=sys.stderr)
        if not (paths.venv / "bin" / "python").exists():
            _checked(venv_command(paths))
        _checked(install_command(paths))
        paths.installed.write_text(requirements_digest())
    if not paths.proxy.exists():
        if not shutil.which("npm"):
            raise UserError("npm is missing: install Node.js >= 20 (configurable-http-proxy needs it)")  # fmt: skip
        print(f"dllab: installing configurable-http-proxy into {paths.proxy_prefix}", file=sys.stderr)  # fmt: skip
        paths.proxy_prefix.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(PROXY_PACKAGE / name, paths.proxy_prefix / name)
        _checked(proxy_command(paths))


def _checked(cmd: list[str]) -> str:
    """`cmd`'s output, or a UserError with its last line."""
    result = _run(cmd)
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"`{' '.join(cmd[:4])} ...` failed: {last[0]}")
    return result.stdout


def ensure_network(name: str) -> str:
    """The hub network (made if missing) and the host's address on it."""
    inspect = ["docker", "network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}}", name]  # fmt: skip
    result = _run(inspect)
    if result.returncode != 0:
        _checked(network_command(name))
        result = _run(inspect)
    gateway = result.stdout.strip()
    if result.returncode != 0 or not gateway:
        raise UserError(f"docker network {name} has no gateway address: remove it, then run this again")  # fmt: skip
    return gateway


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
        "DLLAB_HUB_STATE": str(paths.state),
        "DLLAB_HUB_PREFIX": prefix(),
        "DLLAB_HUB_NETWORK": f"{prefix()}-net",
        "DLLAB_HUB_IP": gateway,
        "DLLAB_HUB_API_PORT": str(containers.any_free_port(gateway)),
        "DLLAB_HUB_PROGRESS_PORT": str(containers.any_free_port(gateway)),  # the progress service
        "DLLAB_HUB_PROXY_API_PORT": str(containers.any_free_port()),
        "DLLAB_HUB_PROXY": str(paths.proxy),
        "DLLAB_HUB_API_TOKEN": paths.token.read_text().strip(),
        "DLLAB_HUB_GPU": "1" if gpu else "0",
        **({"DLLAB_HUB_GPUS": gpu_ids()} if gpu else {}),
    }


def start(variant_name: str, port: int, admin: str, paths: Paths) -> str:
    """Start the hub in the background; return its URL once its API answers."""
    variant = check_variant(variant_name)
    if not admin or not admin.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise UserError(f"admin name {admin!r} is not a user name: use letters, digits, - _ .")
    paths.state.mkdir(parents=True, exist_ok=True)
    # Software, database, secrets and logs: nothing here belongs in git.
    (paths.state / ".gitignore").write_text("*\n")
    if pid := running_pid(paths):
        url = json.loads(paths.info.read_text())["url"] if paths.info.exists() else "?"
        raise UserError(f"a hub is already running (pid {pid}, {url}): stop it with `python -m dllab.hub stop`")  # fmt: skip
    check_port(port)
    info = containers.check_engine()
    containers.check_image(variant)
    gpu = containers.gpu_runtime(info, variant)
    if variant.gpu_runtime and not gpu:
        print(f"dllab: the engine has no {variant.gpu_runtime} runtime: users get {variant.image} without a GPU", file=sys.stderr)  # fmt: skip
    ensure_software(paths)
    gateway = ensure_network(f"{prefix()}-net")
    if not paths.token.exists():
        paths.token.touch(mode=0o600)
        paths.token.write_text(secrets.token_hex(32))
    env = {**os.environ, **hub_env(paths, variant, port, admin, gateway, gpu)}
    env["PATH"] = f"{paths.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    with paths.log.open("ab") as log:
        process = subprocess.Popen(
            hub_command(paths), cwd=paths.state, env=env, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    paths.pid.write_text(str(process.pid))
    url = f"http://127.0.0.1:{port}/hub/"
    paths.info.write_text(json.dumps({"url": url, "variant": variant.name, "admin": admin}))
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


def stop(paths: Paths) -> int:
    """Stop the hub and every user's container; never a volume. The number of containers removed."""
    pid = running_pid(paths)
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
    if containers.engine_answers():
        ids = _run(containers_command()).stdout.split()
        if ids:
            _run(["docker", "rm", "--force", *ids])
            removed = len(ids)
        _run(["docker", "network", "rm", f"{prefix()}-net"])
    if not pid:
        raise UserError(f"no hub is running (removed {removed} leftover user containers)")
    return removed


def volumes() -> list[tuple[str, str]]:
    """(volume, owner) of every user's work volume."""
    lines = _checked(volumes_command()).splitlines()
    return [(name, owner) for name, _, owner in (line.partition("\t") for line in lines if line)]


def remove_volumes(yes: bool, paths: Paths) -> list[str]:
    """Delete every user's work volume; without `yes`, only say what would go."""
    containers.check_engine()
    if running_pid(paths):
        raise UserError("the hub is running: stop it first with `python -m dllab.hub stop`")
    found = volumes()
    for name, owner in found:
        print(
            f"{'deleting' if yes else 'would delete'} volume {name} (user {owner or '?'}'s /work)"
        )
    if not found:
        print("no user volumes to delete")
        return []
    if not yes:
        raise UserError(f"deleting {len(found)} volumes loses those users' work: pass --yes to delete them")  # fmt: skip
    result = _run(["docker", "volume", "rm", *(name for name, _ in found)])
    if result.returncode != 0:
        raise UserError(f"`docker volume rm` failed: {result.stderr.strip().splitlines()[-1]}")
    return [name for name, _ in found]


class _Parser(argparse.ArgumentParser):
    """argparse that raises a UserError (one line, exit 2) instead of printing usage."""

    def error(self, message: str):
        raise UserError(message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m dllab.hub", description=__doc__)
    sub = p.add_subparsers(dest="action", required=True, parser_class=_Parser)
    s = sub.add_parser(
        "start", help="start JupyterHub (DockerSpawner) on 127.0.0.1 in the background"
    )
    s.add_argument("--variant", default="cpu", help="image each user gets: dllab:<variant>")
    s.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port on 127.0.0.1 (default 8000)"
    )
    s.add_argument("--admin", default=DEFAULT_ADMIN, help="the admin user, who approves sign-ups")
    sub.add_parser("stop", help="stop the hub and every user's server (volumes stay)")
    r = sub.add_parser("remove-volumes", help="delete every user's work volume (asks for --yes)")
    r.add_argument("--yes", action="store_true", help="really delete them")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    paths = Paths.default()
    try:
        args = p.parse_args(argv)
        if args.action == "start":
            url = start(args.variant, args.port, args.admin, paths)
            print(f"JupyterHub: {url}  (log: {paths.log})")
            print(
                f"first, sign up as {args.admin} at {url}signup; approve learners at {url}authorize"
            )
        elif args.action == "stop":
            removed = stop(paths)
            print(f"hub stopped; {removed} leftover user containers removed; volumes kept")
        else:
            remove_volumes(args.yes, paths)
        return 0
    except UserError as exc:
        return report(exc)


if __name__ == "__main__":
    sys.exit(main())
