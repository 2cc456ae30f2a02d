"""dllab.labs: fast mode, the runs folder, missing frameworks and reference solutions."""

from __future__ import annotations

import importlib.util

from dllab import labs


def test_pick_chooses_the_fast_value_only_in_fast_mode(monkeypatch):
    """pick(full, fast) follows DLLAB_FAST as read at import."""
    monkeypatch.setattr(labs, "FAST", True)
    assert labs.pick(full=20, fast=2) == 2
    monkeypatch.setattr(labs, "FAST", False)
    assert labs.pick(full=20, fast=2) == 20


def test_runs_dir_is_created_under_dllab_runs(monkeypatch, tmp_path):
    """Lab output goes under $DLLAB_RUNS, never next to the labs."""
    monkeypatch.setenv("DLLAB_RUNS", str(tmp_path))
    path = labs.runs_dir("04_training", "run1")
    assert path == tmp_path / "04_training" / "run1" and path.is_dir()


def test_runs_dir_defaults_to_runs_in_the_current_directory(monkeypatch, tmp_path):
    """Without DLLAB_RUNS, output goes to ./runs."""
    monkeypatch.delenv("DLLAB_RUNS", raising=False)
    monkeypatch.chdir(tmp_path)
    assert labs.runs_dir("x").resolve() == (tmp_path / "runs" / "x").resolve()


def test_missing_framework_is_named_with_the_variant_that_ships_it(monkeypatch, capsys):
    """require() returns False and says which variant has the framework and what is skipped."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "jax" else real(name, *a)
    )
    assert labs.require("jax") is False
    assert capsys.readouterr().out == (
        "jax is not installed here: it ships in the cpu variant; skipping the JAX section\n"
    )
    assert labs.require("numpy") is True


def test_exercise_is_replaced_by_its_solution_only_with_dllab_solutions(monkeypatch, tmp_path):
    """@exercise keeps the learner's function, or with DLLAB_SOLUTIONS=1 returns labs/solutions/'s."""
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "99_demo.py").write_text("def answer():\n    return 42\n")
    monkeypatch.chdir(tmp_path)

    def answer():
        raise NotImplementedError

    monkeypatch.setattr(labs, "SOLUTIONS", False)
    assert labs.exercises("99_demo")(answer) is answer
    monkeypatch.setattr(labs, "SOLUTIONS", True)
    assert labs.exercises("99_demo")(answer)() == 42
    assert not (tmp_path / "solutions" / "__pycache__").exists()


def test_benchmark_times_after_warm_up():
    """benchmark() calls fn warmup + repeat times and keeps only the timed ones."""
    calls = []
    timing = labs.benchmark(lambda: calls.append(1), warmup=2, repeat=5)
    assert len(calls) == 7 and len(timing.seconds) == 5
    assert timing.low <= timing.median <= timing.high
