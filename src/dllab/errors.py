"""The one exception a user sees as a single actionable line, and how a command line ends on it."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import NoReturn

USAGE = 2  # the exit code of every bad-input ending


class UserError(Exception):
    """Bad input or a broken environment: the message says what to do; no traceback is shown."""


def say(line: str) -> None:
    """A status line of a task (what it does, what happened), `dllab: ...` on stderr."""
    print(f"dllab: {line}", file=sys.stderr, flush=True)


def report(exc: UserError) -> int:
    """Print `dllab: <what to do>` on stderr; the exit code for it."""
    print(f"dllab: {exc}", file=sys.stderr)
    return USAGE


class Parser(argparse.ArgumentParser):
    """argparse for every dllab command line: a bad argument is a UserError (one line, exit 2),
    never a usage dump."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # `--work` never stands for a flag it is not
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UserError(message)

    def add_subparsers(self, **kwargs):
        kwargs.setdefault("parser_class", Parser)
        return super().add_subparsers(**kwargs)


def task_command(task: str, *flags: str) -> str:
    """`invoke TASK FLAGS` as this user runs the tasks, to print in a hint that works as printed:
    `python3 tasks.py TASK` where they started one that way (invoke may not be on their PATH),
    with their DLLAB_INSTANCE."""
    program = os.environ.get("DLLAB_TASKS_PROGRAM") or "invoke"
    instance = os.environ.get("DLLAB_INSTANCE")
    line = shlex.join([task, *flags])
    return f"{'DLLAB_INSTANCE=' + shlex.quote(instance) + ' ' if instance else ''}{program} {line}"
