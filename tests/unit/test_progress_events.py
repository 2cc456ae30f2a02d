"""dllab.progress on the learner's side: what a check records (six fields, 0600), attempts, the
lab's name, opting out, and the table `invoke progress` prints."""

from __future__ import annotations

import json
import stat
import sys
from datetime import UTC, datetime

import pytest
from invoke import MockContext

import tasks
from dllab import check
from dllab.progress import events, report

FIELDS = {"user", "lab", "exercise", "passed", "attempt", "time"}


@pytest.fixture(autouse=True)
def work(monkeypatch, tmp_path):
    """A work folder of the test's own, a learner named alice, no Jupyter session."""
    monkeypatch.setenv("DLLAB_WORK", str(tmp_path))
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.setattr(events, "_lab", None)
    monkeypatch.setattr(check, "_said_unrecorded", False)
    return tmp_path


def logged(work) -> list[dict]:
    return [json.loads(line) for line in events.log_path(work).read_text().splitlines()]


def test_a_check_records_six_fields_in_a_private_file(work, monkeypatch):
    """One check, one line: exactly user, lab, exercise, passed, attempt, time; file 0600, folder 0700."""
    monkeypatch.setenv("JPY_SESSION_NAME", "/work/labs/01_tensors_autodiff.py")
    check.close("TensorFlow gradient", [1.0, 2.0], [1.0, 3.0])
    [event] = logged(work)
    assert set(event) == FIELDS
    assert event["user"] == "alice" and event["lab"] == "01_tensors_autodiff"
    assert event["exercise"] == "TensorFlow gradient" and event["passed"] is False
    assert event["attempt"] == 1
    assert datetime.fromisoformat(event["time"]).utcoffset().total_seconds() == 0
    assert stat.S_IMODE(events.log_path(work).stat().st_mode) == 0o600
    assert stat.S_IMODE(events.log_path(work).parent.stat().st_mode) == 0o700


def test_attempts_count_per_lab_and_exercise(work, monkeypatch):
    """Each lab's exercise counts its own attempts: 1, 2, 3 for one, 1 for another and another lab."""
    events.set_lab("01_tensors_autodiff")
    for value in (1, 2, 3):
        check.equal("answer", value, 3)
    check.equal("other", 1, 1)
    events.set_lab("02_graphs")
    check.equal("answer", 3, 3)
    assert [(e["lab"], e["exercise"], e["attempt"], e["passed"]) for e in logged(work)] == [
        ("01_tensors_autodiff", "answer", 1, False),
        ("01_tensors_autodiff", "answer", 2, False),
        ("01_tensors_autodiff", "answer", 3, True),
        ("01_tensors_autodiff", "other", 1, True),
        ("02_graphs", "answer", 1, True),
    ]


def test_the_lab_is_the_notebooks_stem_then_the_named_lab_then_the_script(monkeypatch):
    """Jupyter's session path wins; without one, the lab labs.exercises() named; else the script."""
    monkeypatch.setattr("sys.argv", ["labs/03_keras_backends.py"])
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)  # not in a kernel
    assert events.current_lab() == "03_keras_backends"
    events.set_lab("02_graphs")
    assert events.current_lab() == "02_graphs"
    monkeypatch.setenv("JPY_SESSION_NAME", "/work/labs/01_tensors_autodiff.py")
    assert events.current_lab() == "01_tensors_autodiff"


def test_opting_out_records_nothing_and_the_check_still_says_its_verdict(work, capsys):
    """With .dllab/opt-out, no line is written; the verdict prints as before; opting in resumes."""
    print(report.switch(work, on=False))
    assert check.equal("answer", 1, 2) == False  # noqa: E712 (a Verdict compares as a bool)
    assert "not yet: answer" in capsys.readouterr().out
    assert not events.log_path(work).exists()
    assert stat.S_IMODE(events.opt_out_path(work).stat().st_mode) == 0o600
    report.switch(work, on=True)
    check.equal("answer", 2, 2)
    assert [e["attempt"] for e in logged(work)] == [1]


def test_an_unwritable_log_is_said_once_and_checks_go_on(work, capsys):
    """A log that cannot be written: one stderr line for the kernel, and every check still works."""
    (work / ".dllab").write_text("a file where the folder should be")
    assert check.equal("one", 1, 1) and check.equal("two", 2, 2)
    out = capsys.readouterr()
    assert out.out == "correct: one\ncorrect: two\n"
    assert out.err.count("dllab: progress not recorded") == 1


@pytest.mark.parametrize(
    "line",
    [
        '{"user": "a", "lab": "l", "exercise": "e", "passed": true, "attempt": 1}',
        '{"user": "a", "lab": "l", "exercise": "e", "passed": true, "attempt": 1, "time": "2026-01-01T00:00:00+00:00", "code": "x = 1"}',
        '{"user": "a", "lab": "l", "exercise": "e", "passed": 1, "attempt": 1, "time": "2026-01-01T00:00:00+00:00"}',
        '{"user": "a", "lab": "l", "exercise": "e", "passed": true, "attempt": 0, "time": "2026-01-01T00:00:00+00:00"}',
        '{"user": "", "lab": "l", "exercise": "e", "passed": true, "attempt": 1, "time": "2026-01-01T00:00:00+00:00"}',
        '{"user": "a", "lab": "l", "exercise": "e", "passed": true, "attempt": 1, "time": "2026-01-01T00:00:00"}',
        "not json",
    ],
)
def test_anything_but_the_six_fields_well_typed_is_not_an_event(line):
    """Missing or extra fields, wrong types, a zero attempt, no name, a time without zone: None."""
    assert events.parse(line) is None


def test_an_events_id_is_the_same_for_the_same_six_fields():
    """The id depends on the six fields only, not on their order or the line's spacing."""
    event = {"user": "a", "lab": "l", "exercise": "e", "passed": True, "attempt": 1,
             "time": "2026-01-01T00:00:00+00:00"}  # fmt: skip
    assert events.event_id(event) == events.event_id(dict(reversed(event.items())))
    assert events.event_id(event) != events.event_id({**event, "attempt": 2})


def test_invoke_progress_prints_each_exercise_with_its_result_attempts_and_last_time(work, capsys):
    """The table: one row per exercise in the order tried, passed if any attempt passed."""
    events.set_lab("01_tensors_autodiff")
    when = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
    for passed in (False, False, True):
        events.record("TensorFlow gradient", passed, when)
    events.record("PyTorch gradient", False, when)
    tasks.progress(MockContext(), work=str(work))
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["lab", "exercise", "result", "attempts", "last"]
    assert lines[2].split()[:5] == ["01_tensors_autodiff", "TensorFlow", "gradient", "passed", "3"]
    assert lines[3].split()[:6] == ["01_tensors_autodiff", "PyTorch", "gradient", "not", "yet", "1"]
    assert lines[-1] == "1 of 2 exercises passed"


def test_invoke_progress_on_a_missing_folder_is_one_line_and_exit_2(tmp_path, capsys):
    """A mistyped --work: one `dllab:` line naming the flag, exit 2."""
    with pytest.raises(tasks.Exit) as ended:
        tasks.progress(MockContext(), work=str(tmp_path / "nowhere"))
    assert ended.value.code == 2
    assert capsys.readouterr().err.startswith("dllab: no work folder ")


def test_a_verdict_is_shown_as_a_bool_but_not_by_ipython(work):
    """repr says True/False, comparisons and sums work as bools, IPython's display shows nothing."""
    right, wrong = check.equal("a", 1, 1), check.equal("b", 1, 2)
    assert (repr(right), repr(wrong)) == ("True", "False")
    assert right == True and wrong == False and right + right + wrong == 2  # noqa: E712
    assert right._ipython_display_() is None
