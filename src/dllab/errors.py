"""The one exception a user sees as a single actionable line, and how a command line ends on it."""

import sys

USAGE = 2  # the exit code of every bad-input ending


class UserError(Exception):
    """Bad input or a broken environment: the message says what to do; no traceback is shown."""


def report(exc: UserError) -> int:
    """Print `dllab: <what to do>` on stderr; the exit code for it."""
    print(f"dllab: {exc}", file=sys.stderr)
    return USAGE
