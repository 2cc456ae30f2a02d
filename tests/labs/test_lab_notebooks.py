"""Every lab runs headless, as Jupyter would run it: solved, every check is correct; as shipped, every exercise says "not yet"."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import jupytext
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from dllab.variants import ROOT
from tests.support import require_frameworks

LABS_DIR = Path(__file__).resolve().parents[2] / "labs"
LABS = sorted(p.name for p in LABS_DIR.glob("[0-9][0-9]_*.py"))
TIMEOUT = 600  # per cell; fast mode needs far less, but a loaded CI machine can be slow
HIDE_JAX = (
    "import sys\nsys.modules['jax'] = None  # import jax now fails, as where it is not installed\n"
)


def run_lab(path: Path, env: dict[str, str]) -> tuple[str, str | None]:
    """Execute the lab in a fresh python3 kernel; return its text output and the error that stopped it."""
    nb = jupytext.read(path)
    client = NotebookClient(
        nb,
        timeout=TIMEOUT,
        kernel_name="python3",
        resources={
            "metadata": {"path": str(path.parent)}
        },  # the kernel starts in labs/, as in Jupyter
    )
    try:
        client.execute(env=env)
        error = None
    except CellExecutionError as exc:
        error = str(exc)
    text = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                text.append(output.text)
            elif output.output_type == "error":
                text.append("\n".join(output.traceback))
            elif "text/plain" in output.get("data", {}):
                text.append(output.data["text/plain"])
    return "\n".join(text), error


def lab_env(runs: Path, solutions: bool, **extra: str) -> dict[str, str]:
    """The kernel's environment: fast mode, solutions on or off, artefacts and the checks'
    progress log under `runs`."""
    return dict(
        os.environ,
        DLLAB_FAST="1",
        DLLAB_SOLUTIONS="1" if solutions else "0",
        DLLAB_RUNS=str(runs),
        DLLAB_WORK=str(runs),
        **extra,
    )


def runs_folder(tmp_path_factory, lab: str, solutions: bool) -> Path:
    """Where a lab's run (solved or as shipped) writes: the same folder for every test asking."""
    return tmp_path_factory.getbasetemp() / f"runs-{lab[:2]}-{'solved' if solutions else 'shipped'}"


def files_in(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if "__pycache__" not in p.parts}


@pytest.fixture(scope="session")
def lab_result(tmp_path_factory):
    """Run a lab solved and as shipped, side by side: each kernel mostly waits on imports, one core each."""
    require_frameworks()
    pool = ThreadPoolExecutor(max_workers=2)
    futures: dict[tuple[str, bool], Future] = {}

    def result(lab: str, solutions: bool) -> tuple[str, str | None]:
        for mode in (True, False):
            if (lab, mode) not in futures:
                runs = runs_folder(tmp_path_factory, lab, mode)
                runs.mkdir()
                futures[lab, mode] = pool.submit(run_lab, LABS_DIR / lab, lab_env(runs, mode))
        return futures[lab, solutions].result()

    yield result
    pool.shutdown(cancel_futures=True)


def exercise_names(path: Path) -> list[str]:
    """The functions a lab decorates with @exercise."""
    tree = ast.parse(path.read_text())
    return [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and any(isinstance(d, ast.Name) and d.id == "exercise" for d in node.decorator_list)
    ]


def test_labs_are_found():
    """The labs folder holds the numbered lessons 00 to 07."""
    assert [name[:2] for name in LABS] == ["00", "01", "02", "03", "04", "05", "06", "07"]


@pytest.mark.parametrize("lab", LABS)
def test_every_exercise_has_a_reference_solution(lab):
    """Each lab has at least one exercise, and labs/solutions/ defines every one of them."""
    names = exercise_names(LABS_DIR / lab)
    assert names, f"{lab} has no @exercise function"
    solved = {
        node.name
        for node in ast.parse((LABS_DIR / "solutions" / lab).read_text()).body
        if isinstance(node, ast.FunctionDef)
    }
    assert set(names) <= solved, f"no solution for {set(names) - solved}"


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS)
def test_solved_lab_runs_and_every_check_is_correct(lab, lab_result):
    """With DLLAB_SOLUTIONS=1 the lab runs to the end, and every check says correct."""
    before = files_in(LABS_DIR)
    text, error = lab_result(lab, solutions=True)
    assert error is None, error
    assert "not yet" not in text, text
    assert "correct: " in text
    assert files_in(LABS_DIR) <= before, "a lab wrote into labs/: write under DLLAB_RUNS"


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS)
def test_shipped_lab_runs_to_the_end_saying_not_yet(lab, lab_result):
    """As shipped, the exercises are unsolved: the lab still runs to the end, and they say not yet."""
    text, error = lab_result(lab, solutions=False)
    assert error is None, error
    assert "not yet: " in text
    assert "Traceback" not in text, text


@pytest.mark.slow
def test_invoke_progress_after_a_shipped_lab_lists_each_check_as_its_kernel_said(
    lab_result, tmp_path_factory
):
    """Lab 01 run as shipped records one event per check it printed; `invoke progress --work`
    then lists each once: not yet for the unsolved exercises, passed for the rest."""
    pytest.importorskip("invoke", reason="invoke is a host tool, not in the image")
    lab = "01_tensors_autodiff.py"
    text, error = lab_result(lab, solutions=False)
    assert error is None, error
    work = runs_folder(tmp_path_factory, lab, solutions=False)
    log = [
        json.loads(line) for line in (work / ".dllab" / "progress.jsonl").read_text().splitlines()
    ]
    printed = [line for line in text.splitlines() if line.startswith(("correct: ", "not yet: "))]
    assert len(log) == len(printed) and {e["lab"] for e in log} == {"01_tensors_autodiff"}
    shown = subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), "progress", "--work", str(work)],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    rows = [line for line in shown if line.startswith("01_tensors_autodiff ")]
    assert len(rows) == len({e["exercise"] for e in log})
    for event in log:
        [row] = [r for r in rows if r.split(None, 1)[1].startswith(event["exercise"] + "  ")]
        words = row.split(None, 1)[1][len(event["exercise"]) :].split()
        assert words[:2] == (["passed", "1"] if event["passed"] else ["not", "yet"]), row
    assert any(not e["passed"] for e in log) and any(e["passed"] for e in log)


@pytest.mark.slow
def test_lab_without_jax_skips_its_jax_section_and_says_which_variant_has_it(tmp_path):
    """Where JAX is missing, lab 01 says so, names the variant that ships it, and passes the rest."""
    require_frameworks()
    (tmp_path / "sitecustomize.py").write_text(HIDE_JAX)
    env = lab_env(tmp_path / "runs", solutions=True, PYTHONPATH=str(tmp_path))
    text, error = run_lab(LABS_DIR / "01_tensors_autodiff.py", env)
    assert error is None, error
    assert (
        "jax is not installed here: it ships in the cpu variant; skipping the JAX section" in text
    )
    assert "correct: " in text and "not yet" not in text
    assert "JAX gradient" not in text
