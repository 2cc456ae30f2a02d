"""The one runner: every command dllab runs (docker's, and uv, pip, git, ssh-keygen, the
frameworks' probes) is an argument list run here, as pypa/build's `run_subprocess`: echoed as a
shell line when asked, never run under `invoke --dry`, its output captured or shown."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dllab.errors import UserError


def quote(cmd: Sequence[str]) -> str:
    return shlex.join(cmd)


# --- the one runner --------------------------------------------------------------------------


@dataclass
class Done:
    """What a command did: its exit code and, when captured, its output."""

    code: int
    out: str = ""
    err: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 0

    def last_line(self) -> str:
        lines = (self.err or self.out).strip().splitlines()
        return lines[-1] if lines else f"exit code {self.code}"


def _text(data: str | bytes | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


class Runner:
    """Runs argument lists (never a shell line): output captured (`quiet`) or shown. With `echo`,
    a command that changes something (`echo=True`, or shown output) is printed first, as invoke
    prints them; under `dry`, every command is printed and none runs (each answers exit 0)."""

    def __init__(self, echo: bool = False, dry: bool = False):
        self.echo, self.dry = echo, dry

    def show(self, cmd: Sequence[str], wanted: bool = True) -> None:
        if self.dry or (self.echo and wanted):
            print(quote(cmd), file=sys.stdout if self.dry else sys.stderr, flush=True)

    def __call__(
        self,
        cmd: Sequence[str],
        *,
        quiet: bool = True,
        echo: bool = False,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        input: str | bytes | None = None,
    ) -> Done:
        """`input` goes to its stdin (bytes: the output is decoded, undecodable bytes replaced)."""
        self.show(cmd, echo or not quiet)
        if self.dry:
            return Done(0)
        text = not isinstance(input, bytes)
        try:
            result = subprocess.run(
                list(cmd), capture_output=quiet, text=text, env={**os.environ, **(env or {})},
                timeout=timeout, input=input,
            )  # fmt: skip
        except FileNotFoundError:
            return Done(127, err=f"{cmd[0]}: command not found")
        except subprocess.TimeoutExpired:  # a framework's child that hangs (dllab.devices)
            return Done(124, err=f"timed out after {timeout:.0f} s")
        return Done(result.returncode, _text(result.stdout), _text(result.stderr))

    def start(self, cmd: Sequence[str], echo: bool = False, **popen) -> subprocess.Popen | None:
        """A long-running command (a worker, the hub); None under a dry run."""
        self.show(cmd, echo)
        return None if self.dry else subprocess.Popen(list(cmd), **popen)

    def checked(self, cmd: Sequence[str], *, quiet: bool = True, echo: bool = True) -> str:
        """The output of a command that changes something (echoed), or a UserError with its
        last line."""
        done = self(cmd, quiet=quiet, echo=echo)
        if not done.ok:
            raise UserError(f"`{quote(cmd[:3])} ...` failed: {done.last_line()}")
        return done.out


class InvokeRunner(Runner):
    """The Runner of an invoke task: every command through `c.run`, so that `invoke --dry`
    prints it and tests answer it (invoke's MockContext)."""

    def __init__(self, c):
        super().__init__(echo=bool(c.config.run.echo), dry=bool(c.config.run.dry))
        self.c = c

    def __call__(self, cmd, *, quiet=True, echo=False, env=None, timeout=None, input=None) -> Done:
        if input is not None:  # data on its stdin: run here (echoed and dry-run alike)
            return super().__call__(cmd, quiet=quiet, echo=echo, env=env, timeout=timeout, input=input)  # fmt: skip
        # hide=True also silences invoke's echo; "both" hides the output alone.
        hide = ("both" if echo else True) if quiet else None
        result = self.c.run(
            quote(cmd), hide=hide, warn=True, pty=False, env=dict(env or {}), timeout=timeout
        )
        return Done(result.exited, result.stdout or "", result.stderr or "")

    def show(self, cmd, wanted=True) -> None:
        if self.dry or (self.echo and wanted):  # as invoke echoes what it runs
            print(self.c.config.run.echo_format.format(command=quote(cmd)), flush=True)

    def start(self, cmd, echo=False, **popen):
        if self.dry:
            self.c.run(quote(cmd))  # printed, not run
            return None
        return super().start(cmd, echo, **popen)
