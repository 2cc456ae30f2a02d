"""dllab.check: a verdict the learner reads, and a bool, for right answers, wrong ones and crashes."""

from __future__ import annotations

import numpy as np
import pytest

from dllab import check


def test_right_answer_says_correct_and_returns_true(capsys):
    """A value within tolerance prints correct and returns True."""
    assert check.close("sum", np.float32(3.0000001), 3.0) is True
    assert capsys.readouterr().out == "correct: sum\n"


def test_wrong_answer_says_not_yet_and_returns_false(capsys):
    """A value outside tolerance prints not yet, with where it differs, and returns False."""
    assert check.close("grad", np.array([1.0, 2.0, 4.0]), [1.0, 2.0, 3.0]) is False
    out = capsys.readouterr().out
    assert out.startswith("not yet: grad: 1 of 3 values differ")
    assert "at (2,): got 4, expected 3" in out


def test_wrong_shape_names_the_expected_shape(capsys):
    """A tensor of the wrong shape is reported with both shapes."""
    assert check.close("grad", np.zeros((3, 1)), np.zeros(3)) is False
    assert "expected shape (3,), got shape (3, 1)" in capsys.readouterr().out


def test_a_list_instead_of_a_tensor_is_named(capsys):
    """A Python list is not accepted as a tensor, and the message says what was expected."""
    assert check.shape("w", [1.0, 2.0, 3.0], (3,)) is False
    assert "expected a tensor of shape (3,), got list of length 3" in capsys.readouterr().out


def test_none_suggests_a_missing_return(capsys):
    """A function that returned nothing is told so."""
    assert check.close("w", lambda: None, [1.0]) is False
    assert "got None (is a `return` missing?)" in capsys.readouterr().out


def test_not_implemented_exercise_is_caught(capsys):
    """NotImplementedError from an unsolved exercise becomes a not-yet, never a traceback."""

    def unsolved():
        raise NotImplementedError

    assert check.close("grad", lambda: unsolved(), [1.0], hint="use a tape") is False
    out = capsys.readouterr().out
    assert out.startswith("not yet: grad: not implemented yet")
    assert out.rstrip().endswith("(hint: use a tape)")
    assert "Traceback" not in out


def test_any_exception_in_learner_code_is_caught_and_named(capsys):
    """An error raised by the learner's code is reported by type and message."""
    assert check.equal("kinds", lambda: {}["torch"], {"cpu"}) is False
    assert "your code raised KeyError: 'torch'" in capsys.readouterr().out


def test_framework_tensors_are_compared_as_arrays(capsys):
    """TensorFlow and PyTorch tensors (even ones that require grad) are compared by value."""
    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("tensorflow")
    assert check.close("torch", torch.ones(2, requires_grad=True) * 2, [2.0, 2.0])
    assert check.close("tf", tf.constant([1.0, 2.0]), [1.0, 2.0])
    assert capsys.readouterr().out.count("correct") == 2


def test_equal_names_the_expected_type(capsys):
    """equal() says so when the type is wrong, not only the value."""
    assert check.equal("kinds", ["cpu"], {"cpu"}) is False
    assert "expected a set, got list of length 1" in capsys.readouterr().out


def test_that_requires_a_boolean(capsys):
    """that() passes on True, fails with its hint on False, and rejects a non-boolean."""
    assert check.that("fast", lambda: 2 > 1, hint="h") is True
    assert check.that("fast", False, hint="try harder") is False
    assert check.that("fast", lambda: None, hint="h") is False
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "not yet: fast: not true yet (hint: try harder)"
    assert "expected True or False, got None" in out[2]
