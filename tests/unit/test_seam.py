"""The house rules, read from the code itself (AST): one room speaks Docker (containers.py), the GPU
rule lives in the registry, one parser class, one runner, thin tasks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from dllab.variants import ROOT

SRC = ROOT / "src" / "dllab"
HELPERS = [ROOT / "tests" / "support.py", ROOT / "tests" / "hub" / "client.py",
           ROOT / "tests" / "hub" / "measure.py", *ROOT.glob("tests/**/conftest.py")]  # fmt: skip
CODE = [*SRC.rglob("*.py"), ROOT / "tasks.py", *ROOT.glob("deploy/**/*.py"), *HELPERS]


def trees(paths) -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text())) for path in paths]


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_every_docker_command_line_is_built_in_containers_py():
    """No list starting with "docker" (or a DOCKER name), and no DOCKER constant, anywhere but
    src/dllab/containers.py: src, tasks.py, deploy/ and the tests' helpers build none."""
    found = []
    for path, tree in trees(CODE):
        if path == SRC / "containers.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.List) and node.elts:  # a command is an argument list
                first = node.elts[0]
                if (isinstance(first, ast.Constant) and first.value == "docker") or (
                    isinstance(first, ast.Name | ast.Attribute)
                    and ast.unparse(first).endswith("DOCKER")
                ):
                    found.append(f"{relative(path)}:{node.lineno}")
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "DOCKER" for t in node.targets
            ):
                found.append(f"{relative(path)}:{node.lineno} (a DOCKER constant)")
    assert found == []


def test_the_gpu_rule_is_the_registrys_alone():
    """The `--gpus` option is spelled in variants.py only: labs, workers and the hub ask the
    registry for GPU options."""
    found = [
        f"{relative(path)}:{node.lineno}"
        for path, tree in trees(CODE)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value == "--gpus" and path != SRC / "variants.py"
    ]
    assert found == []


def test_one_parser_class_for_every_command_line():
    """argparse.ArgumentParser is subclassed or built in errors.py alone (errors.Parser)."""
    found = []
    for path, tree in trees([*SRC.rglob("*.py"), *HELPERS]):
        for node in ast.walk(tree):
            names = [ast.unparse(b) for b in node.bases] if isinstance(node, ast.ClassDef) else []
            if isinstance(node, ast.Call):
                names = [ast.unparse(node.func)]
            if any(n.endswith("ArgumentParser") for n in names) and path != SRC / "errors.py":
                found.append(f"{relative(path)}:{node.lineno}")
    assert found == []


def test_no_private_runner_every_command_goes_through_containers_runner():
    """subprocess is called in runner.py alone (the one Runner): no `_run`, `_docker` or `sh`."""
    found = [
        f"{relative(path)}:{node.lineno}"
        for path, tree in trees(SRC.rglob("*.py"))
        if path != SRC / "runner.py"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and ast.unparse(node.func).startswith("subprocess.")
    ]
    assert found == []


@pytest.fixture(scope="module")
def tasks_tree() -> ast.Module:
    return ast.parse((ROOT / "tasks.py").read_text())


def test_tasks_are_thin(tasks_tree):
    """tasks.py stays under 400 lines, keeps no state of its own and ends bad input in one place;
    each task's body is a call or two into src/dllab."""
    text = (ROOT / "tasks.py").read_text()
    assert len(text.splitlines()) <= 400
    for word in ("json.dump", "os.open", "webbrowser", "time.sleep"):
        assert word not in text
    handlers = [n for n in ast.walk(tasks_tree) if isinstance(n, ast.ExceptHandler)
                and n.type is not None and "UserError" in ast.unparse(n.type)]  # fmt: skip
    assert len(handlers) == 1
    tasks = [f for f in tasks_tree.body if isinstance(f, ast.FunctionDef) and any(
        "task" in ast.unparse(d) for d in f.decorator_list)]  # fmt: skip
    assert len(tasks) >= 13
    for task in tasks:
        body = [s for s in task.body if not isinstance(s, ast.Expr) or not isinstance(s.value, ast.Constant)]  # fmt: skip
        assert len(body) <= 4, f"{task.name} is not thin: {len(body)} statements"
