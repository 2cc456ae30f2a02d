"""`invoke lab`: JupyterLab from the variant's image, on 127.0.0.1 with a token, as you, with your
work folder at /work; `--stop`, the URL again, and TensorBoard's URL behind the lab's login."""

from __future__ import annotations

import json
import os
import secrets
import stat
import sys
import time
import webbrowser
from dataclasses import dataclass
from pathlib import Path

from dllab import containers, images, native, private, variants
from dllab.containers import Owner
from dllab.errors import UserError, task_command
from dllab.runner import Runner
from dllab.variants import ROOT, Variant

PATH_MAX = 4096  # bytes, with the final NUL (Linux): longer paths cannot be opened
NAME_MAX = 255  # bytes in one folder name
READY_TIMEOUT = 60.0  # seconds until the image's own HEALTHCHECK must pass


# --- the work folder -----------------------------------------------------------------------------


def work_path(value: str, flag: str = "--work") -> Path:
    """The folder `flag` names, as an absolute path, or a UserError in one line; nothing is made."""
    if not value.strip():
        raise UserError(f"{flag} is empty: name a folder (the default is ./work)")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise UserError(f"{flag} {value!r} holds a control character (a newline?): name a folder without one")  # fmt: skip
    path = Path(os.path.abspath(os.path.expanduser(value)))
    size = len(os.fsencode(str(path)))
    if size >= PATH_MAX:
        raise UserError(f"{flag} is {size} bytes long: a path must stay under {PATH_MAX}")
    if any(len(os.fsencode(part)) > NAME_MAX for part in path.parts):
        raise UserError(f"{flag} has a folder name over {NAME_MAX} bytes: use shorter names")
    if path == ROOT or path in ROOT.parents:
        raise UserError(
            f"{flag} {str(path)!r} holds this checkout (its .git and .venv would be writable from "
            "a container): choose a folder inside or beside it, such as ./work"
        )
    return path


def writable_by(path: Path, owner: Owner) -> bool:
    """Whether `owner` may create files in the folder `path` (by its mode bits)."""
    st = path.stat()
    if st.st_uid == owner.uid:
        bits = stat.S_IWUSR | stat.S_IXUSR
    elif st.st_gid == owner.gid:
        bits = stat.S_IWGRP | stat.S_IXGRP
    else:
        bits = stat.S_IWOTH | stat.S_IXOTH
    return st.st_mode & bits == bits


def check_work(path: Path, owner: Owner, flag: str = "--work") -> bool:
    """Whether the folder is new; a UserError if it cannot be used. Nothing is made here."""
    try:
        if path.exists():
            if not path.is_dir():
                raise UserError(f"{flag} {str(path)!r} is not a folder")
            if not writable_by(path, owner):
                raise UserError(
                    f"the lab user (UID {owner.uid}) cannot write {str(path)!r}: choose another "
                    f"folder with {flag}, or give that user write access"
                )
            return False
        if not path.parent.is_dir():
            raise UserError(
                f"{flag} {str(path)!r}: its parent {str(path.parent)!r} does not exist; check the "
                "path (a typo would start you in an empty folder), or create the parent first"
            )
    except PermissionError:
        raise UserError(f"{flag} {str(path)!r}: permission denied; choose a folder you can reach") from None  # fmt: skip
    return True


def make_work(run: Runner, path: Path, owner: Owner, note: str) -> None:
    """Make the new folder (0700, the lab user's), without following a symlink; say so."""
    run.show(["mkdir", "-m", "700", "--", str(path)])
    if not run.dry:
        private.make_folder(path, owner.uid, owner.gid)
    print(f"dllab: NEW folder {path}: {note}", file=sys.stderr)


# --- the running lab -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Lab:
    """One user's lab of one variant, in this checkout and instance."""

    variant: Variant
    owner: Owner

    @property
    def name(self) -> str:
        return containers.container_name(self.variant, self.owner)

    @property
    def state(self) -> Path:
        return containers.state_dir() / f"{self.name}.json"

    @property
    def token_file(self) -> Path:
        return containers.state_dir() / f"{self.name}.token"

    @property
    def page(self) -> Path:
        return containers.state_dir() / f"{self.name}.html"

    def stop_hint(self) -> str:
        return task_command("lab", "--stop", "--variant", self.variant.name)

    def info(self) -> dict:
        return json.loads(self.state.read_text())

    def forget(self) -> None:
        for path in (self.state, self.token_file, self.page):
            path.unlink(missing_ok=True)


def running(run: Runner, name: str) -> bool | None:
    """True if the container runs, False if it exists stopped, None if there is none."""
    done = run(containers.running_command(name))
    return None if not done.ok else done.out.strip() == "true"


def wait_ready(run: Runner, name: str, timeout: float = READY_TIMEOUT) -> None:
    """Wait until the container's own HEALTHCHECK passes; show its logs if it dies or hangs."""
    if run.dry:
        return
    test = run(containers.inspect_command(name, "{{json .Config.Healthcheck.Test}}"))
    if not test.ok or not test.out.strip().startswith("["):
        return
    probe = containers.health_probe(name, json.loads(test.out))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run(probe).ok:
            return
        if not running(run, name):
            break
        time.sleep(0.25)
    run(containers.logs_command(name), quiet=False)
    raise UserError(f"JupyterLab did not become ready: see `docker logs {name}`")


def stop(run: Runner, variant: Variant) -> None:
    """Stop your lab gracefully (kernels shut down) and remove its container; the work stays."""
    containers.check_engine(run)
    lab = Lab(variant, Owner.current())
    if running(run, lab.name) is None:
        print(f"no {variant.name} lab of yours is running ({lab.name})")
        return
    run.checked(containers.stop_command(lab.name))
    run.checked(containers.remove_command(lab.name, force=False))
    if not run.dry:
        lab.forget()


def start(
    run: Runner,
    variant: Variant,
    port: int,
    work: str,
    platform: str | None = None,
    browser: bool = True,
    build: bool = False,
) -> None:
    """Start JupyterLab with the labs; print its URL (and open it where a desktop is). The image
    is pulled or built on first use; `build`: built here first, never pulled."""
    if variants.check_runtime(variant) == "native":
        run.checked(native.lab_command(variant, port), quiet=False)
        return
    platform = variants.docker_platform(variant, platform)
    path = work_path(work)
    lab = Lab(variant, Owner.current())
    containers.instance()  # DLLAB_INSTANCE names the lab: checked before anything is made
    new = check_work(path, lab.owner)  # a folder it cannot use is refused before anything else
    info = containers.check_engine(run)
    state = running(run, lab.name)
    if state and lab.state.exists():
        shown = lab.info()
        if Path(shown["work"]) != path:
            raise UserError(
                f"your {variant.name} lab runs with --work {shown['work']}, not {path}: "
                f"stop it first: {lab.stop_hint()}"
            )
        print(f"your {variant.name} lab is already running: {shown['url']}")
        print(f"your work: {shown['work']}  (stop: {lab.stop_hint()})")
        return
    images.ensure(run, variant, platform, build)
    containers.check_image(variant, platform, run=run)
    gpus = containers.gpus_for(variant, info)
    if variant.gpu_runtime and not gpus:
        raise UserError(
            f"the {variant.name} lab needs the engine's {variant.gpu_runtime} runtime (NVIDIA Container "
            "Toolkit; none in `docker info`): install it and restart Docker, or use --variant cpu"
        )
    free = containers.free_port(port)
    if free is None:
        raise UserError(f"ports {port}-{port + 19} are all busy: choose another with --port")
    if free != port:
        print(f"port {port} is busy: using {free}", file=sys.stderr)
    if state is not None:  # a stopped lab of ours: its container goes, the work stays
        run(containers.remove_command(lab.name))
    if lab.owner.borrowed:
        print(
            f"dllab: run as root, the lab runs as UID {lab.owner.uid}, which no account here has "
            "(so no account can reach it); use sudo from your own account to run it as you",
            file=sys.stderr,
        )
    if new:
        make_work(run, path, lab.owner, (
            "it did not exist, so your lab starts empty (the labs are copied in); if your work "
            f"is elsewhere, stop this lab ({lab.stop_hint()}) and pass that folder with --work"
        ))  # fmt: skip
    token = secrets.token_urlsafe(24)
    if not run.dry:
        private.folder(containers.state_dir())
        # Read by the lab user inside the container (mounted read-only), by nobody else.
        private.write(lab.token_file, token + "\n", lab.owner.uid, lab.owner.gid)
    command = containers.lab_command(variant, free, path, lab.token_file, lab.owner, gpus, platform)
    run.checked(command)
    wait_ready(run, lab.name)
    if run.dry:
        return
    url = f"http://127.0.0.1:{free}/?token={token}"
    # Remembered for `invoke tensorboard` and a second `invoke lab`; readable by you alone.
    private.write(lab.state, json.dumps({"url": url, "port": free, "token": token, "work": str(path)}))  # fmt: skip
    print(f"JupyterLab ({variant.name}): {url}\nyour work: {path}  (stop: {lab.stop_hint()})")
    if browser:
        open_in_browser(lab.page, url)


def open_in_browser(page: Path, url: str) -> None:
    """Open the labs where a desktop is, as `jupyter lab` does: through a private page that
    redirects to the URL, so the token is on no browser's command line."""
    if not (
        sys.platform == "darwin" or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return
    private.write(page, f'<meta http-equiv="refresh" content="0; url={url}">\n')
    webbrowser.open(page.resolve().as_uri())


def tensorboard(run: Runner, variant: Variant) -> None:
    """Print TensorBoard's URL for the labs' logs (WORK/runs), served behind your lab's login."""
    if variants.check_runtime(variant) == "native":
        run.checked(native.command(variant, ["tensorboard", "--logdir", "work/runs", "--host", "127.0.0.1"]), quiet=False)  # fmt: skip
        return
    containers.check_engine(run)
    lab = Lab(variant, Owner.current())
    if not running(run, lab.name) or not lab.state.exists():
        raise UserError(
            f"TensorBoard runs inside your lab, and no {variant.name} lab of yours is running: "
            f"`{task_command('lab', '--variant', variant.name)}` first"
        )
    info = lab.info()
    print(f"TensorBoard ({variant.name}): http://127.0.0.1:{info['port']}/tensorboard/?token={info['token']}")  # fmt: skip
