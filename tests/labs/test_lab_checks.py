"""dllab.check: a verdict the learner reads, and a bool-like Verdict, for right answers, wrong ones
and crashes; in a real kernel, the verdict line and no bare True or False under it."""

from __future__ import annotations

import numpy as np
import pytest

from dllab import check


def test_right_answer_says_correct_and_returns_true(capsys):
    """A value within tolerance prints correct and returns True."""
    assert check.close("sum", np.float32(3.0000001), 3.0)
    assert capsys.readouterr().out == "correct: sum\n"


def test_wrong_answer_says_not_yet_and_returns_false(capsys):
    """A value outside tolerance prints not yet, with where it differs, and returns False."""
    assert not check.close("grad", np.array([1.0, 2.0, 4.0]), [1.0, 2.0, 3.0])
    out = capsys.readouterr().out
    assert out.startswith("not yet: grad: 1 of 3 values differ")
    assert "at (2,): got 4, expected 3" in out


def test_wrong_shape_names_the_expected_shape(capsys):
    """A tensor of the wrong shape is reported with both shapes."""
    assert not check.close("grad", np.zeros((3, 1)), np.zeros(3))
    assert "expected shape (3,), got shape (3, 1)" in capsys.readouterr().out


def test_a_list_instead_of_a_tensor_is_named(capsys):
    """A Python list is not accepted as a tensor, and the message says what was expected."""
    assert not check.shape("w", [1.0, 2.0, 3.0], (3,))
    assert "expected a tensor of shape (3,), got list of length 3" in capsys.readouterr().out


def test_none_suggests_a_missing_return(capsys):
    """A function that returned nothing is told so."""
    assert not check.close("w", lambda: None, [1.0])
    assert "got None (is a `return` missing?)" in capsys.readouterr().out


def test_not_implemented_exercise_is_caught(capsys):
    """NotImplementedError from an unsolved exercise becomes a not-yet, never a traceback."""

    def unsolved():
        raise NotImplementedError

    assert not check.close("grad", lambda: unsolved(), [1.0], hint="use a tape")
    out = capsys.readouterr().out
    assert out.startswith("not yet: grad: not implemented yet")
    assert out.rstrip().endswith("(hint: use a tape)")
    assert "Traceback" not in out


def test_any_exception_in_learner_code_is_caught_and_named(capsys):
    """An error raised by the learner's code is reported by type and message."""
    assert not check.equal("kinds", lambda: {}["torch"], {"cpu"})
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
    assert not check.equal("kinds", ["cpu"], {"cpu"})
    assert "expected a set, got list of length 1" in capsys.readouterr().out


def test_that_requires_a_boolean(capsys):
    """that() passes on True, fails with its hint on False, and rejects a non-boolean."""
    assert check.that("fast", lambda: 2 > 1, hint="h")
    assert not check.that("fast", False, hint="try harder")
    assert not check.that("fast", lambda: None, hint="h")
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "not yet: fast: not true yet (hint: try harder)"
    assert "expected True or False, got None" in out[2]


def test_a_check_cell_in_a_real_kernel_shows_its_verdict_and_no_bare_value():
    """In an IPython kernel, a cell ending in a check shows the verdict line only, no `False` or
    `True` result; a cell ending in a plain comparison still shows its value."""
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    cells = [
        "from dllab import check\ncheck.equal('answer', 1, 2)",
        "check.close('gradient', 1.0, 1.0)",
        "verdict = check.equal('kept', 2, 2)\nprint(bool(verdict), verdict == True)\nverdict",
        "1 + 1 == 2",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    outputs = [
        [
            (o.output_type, o.get("text") or o.get("data", {}).get("text/plain"))
            for o in cell.outputs
        ]
        for cell in nb.cells
    ]
    assert outputs[0] == [("stream", "not yet: answer: expected 2, got 1\n")]
    assert outputs[1] == [("stream", "correct: gradient\n")]
    assert outputs[2] == [("stream", "correct: kept\nTrue True\n")]
    assert outputs[3] == [("execute_result", "True")]
