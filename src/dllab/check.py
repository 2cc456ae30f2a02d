"""Self-checks for lab exercises: each prints `correct: NAME` or `not yet: NAME: WHY`, and returns a Verdict.

Pass the learner's answer as a value, or as a `lambda` that computes it: then an exception in
the learner's code (NotImplementedError, a wrong shape, a typo) becomes a `not yet` with the
reason, never a traceback that stops the notebook. Each check also records its outcome in the
learner's progress log (dllab.progress.events: lab, check name, passed, attempt, time; nothing
else), which `invoke progress` prints and a hub's teacher sees.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from dllab.progress import events

_NOT_A_TENSOR = (type(None), list, tuple, dict, set, str, bytes)


class _NotYet(Exception):
    """Why an answer is not yet right, in words for the learner."""


def _evaluate(got: Any) -> Any:
    """The answer itself: `got`, or what `got()` returns when it is a function or lambda."""
    if not (inspect.isfunction(got) or inspect.ismethod(got)):
        return got
    try:
        return got()
    except NotImplementedError:
        raise _NotYet(
            "not implemented yet: replace `raise NotImplementedError` with your code"
        ) from None
    except Exception as exc:  # the learner's code failed: say how, not where
        raise _NotYet(f"your code raised {type(exc).__name__}: {exc}") from None


def _describe(value: Any) -> str:
    if value is None:
        return "None (is a `return` missing?)"
    if isinstance(value, list | tuple):
        return f"{type(value).__name__} of length {len(value)}"
    return type(value).__name__


def _as_array(value: Any, expected_shape: tuple[int, ...]) -> np.ndarray:
    """`value` (NumPy, TF, PyTorch, JAX or Keras tensor, or a number) as a NumPy array."""
    if isinstance(value, _NOT_A_TENSOR):
        raise _NotYet(f"expected a tensor of shape {expected_shape}, got {_describe(value)}")
    if hasattr(value, "detach"):  # torch.Tensor: leave the autograd graph and the device
        value = value.detach().cpu()
    try:
        array = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
    except Exception as exc:
        raise _NotYet(
            f"expected a tensor of shape {expected_shape}, got {_describe(value)} ({exc})"
        ) from None
    if not np.issubdtype(array.dtype, np.number) and array.dtype != bool:
        raise _NotYet(f"expected a numeric tensor, got {_describe(value)} of {array.dtype}")
    return array


class Verdict(int):
    """A check's outcome: 1 (right) or 0 (not yet), used as the bool it stands for (`if`, `not`,
    `== True`, `sum`), shown as True or False by `repr`, and shown by nothing in Jupyter: the line
    the check printed says it already, and a bare `False` under it reads as a second error."""

    def __new__(cls, passed: bool) -> Verdict:
        return super().__new__(cls, bool(passed))

    def __repr__(self) -> str:
        return repr(bool(self))

    def _ipython_display_(self) -> None:
        """IPython's display hook calls this instead of showing the value: show nothing."""


_said_unrecorded = False  # a log that cannot be written is said once per kernel, not per check


def _record(name: str, passed: bool) -> None:
    """Record the check in the learner's progress log; a failure never changes the check."""
    global _said_unrecorded
    try:
        events.record(name, passed)
    except Exception as exc:  # a read-only or full disk: say so once, keep checking
        if not _said_unrecorded:
            _said_unrecorded = True
            print(f"dllab: progress not recorded ({exc}); your checks still work", file=sys.stderr)


def _report(name: str, verdict: Callable[[], None], hint: str | None) -> Verdict:
    """Run `verdict` (which raises _NotYet when the answer is wrong), print and record the outcome."""
    try:
        verdict()
    except _NotYet as why:
        print(f"not yet: {name}: {why}" + (f" (hint: {hint})" if hint else ""))
        _record(name, False)
        return Verdict(False)
    print(f"correct: {name}")
    _record(name, True)
    return Verdict(True)


def close(
    name: str,
    got: Any,
    expected: Any,
    *,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    hint: str | None = None,
) -> Verdict:
    """`got` has the shape of `expected` and its values agree within `atol + rtol * |expected|`."""

    def verdict() -> None:
        want = np.asarray(expected, dtype=np.float64)
        have = _as_array(_evaluate(got), want.shape)
        if have.shape != want.shape:
            raise _NotYet(f"expected shape {want.shape}, got shape {have.shape}")
        have = have.astype(np.float64)
        if np.isnan(have).any() and not np.isnan(want).any():
            raise _NotYet(f"got NaN at {np.argwhere(np.isnan(have))[0].tolist()}")
        bad = ~np.isclose(have, want, atol=atol, rtol=rtol)
        if bad.any():
            first = tuple(np.argwhere(bad)[0].tolist())
            raise _NotYet(
                f"{int(bad.sum())} of {want.size} values differ by more than "
                f"{atol:g} + {rtol:g}*|expected|; at {first if want.ndim else 'the value'}: "
                f"got {have[first]:.6g}, expected {want[first]:.6g}"
            )

    return _report(name, verdict, hint)


def shape(name: str, got: Any, expected: tuple[int, ...], *, hint: str | None = None) -> Verdict:
    """`got` is a tensor of shape `expected`."""

    def verdict() -> None:
        have = _as_array(_evaluate(got), tuple(expected))
        if have.shape != tuple(expected):
            raise _NotYet(f"expected shape {tuple(expected)}, got shape {have.shape}")

    return _report(name, verdict, hint)


def equal(name: str, got: Any, expected: Any, *, hint: str | None = None) -> Verdict:
    """`got == expected`, for plain values: numbers, strings, sets, dicts."""

    def verdict() -> None:
        have = _evaluate(got)
        if type(have) is not type(expected) and not (
            isinstance(have, int | float | np.number) and isinstance(expected, int | float)
        ):
            raise _NotYet(f"expected a {type(expected).__name__}, got {_describe(have)}")
        if have != expected:
            raise _NotYet(f"expected {_short(expected)}, got {_short(have)}")

    return _report(name, verdict, hint)


def that(name: str, condition: Any, *, hint: str) -> Verdict:
    """`condition` (a bool, or a lambda returning one) holds; `hint` says what to do if not."""

    def verdict() -> None:
        result = _evaluate(condition)
        if not isinstance(result, bool | np.bool_):
            raise _NotYet(f"the check expected True or False, got {_describe(result)}")
        if not result:
            raise _NotYet("not true yet")

    return _report(name, verdict, hint)


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
