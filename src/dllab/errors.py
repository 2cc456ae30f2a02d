"""The one exception a user sees as a single actionable line."""


class UserError(Exception):
    """Bad input or a broken environment: the message says what to do; no traceback is shown."""
