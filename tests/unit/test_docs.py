"""What the docs tell people to type is safe to type."""

from __future__ import annotations

import re
import shlex

from dllab.variants import ROOT

DOCS = [p for p in ROOT.rglob("*.md") if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)]  # fmt: skip
WITH_VALUE = {"-u", "--user", "-e", "--env", "-w", "--workdir"}


def test_every_documented_docker_exec_names_its_program_by_absolute_path():
    """`docker exec ... NAME PROGRAM`: PROGRAM starts with /. A bare `bash` finds the learner's
    /opt/venv/bin/bash first (the venv leads the image's PATH), as root under `-u 0`."""
    found = []
    for doc in DOCS:
        for command in re.findall(r"docker exec[^`\n]*", doc.read_text()):
            words = shlex.split(command)[2:]
            while words and words[0].startswith("-"):
                words = words[2:] if words[0] in WITH_VALUE else words[1:]
            if len(words) >= 2:  # a container and a program
                found.append((doc.name, words[1]))
    assert found, "no documented docker exec found: the test reads nothing"
    assert [(doc, program) for doc, program in found if not program.startswith("/")] == []


def test_the_readme_starts_with_what_to_run():
    """The first screen: prerequisites, then the two commands before any table; CI runs the
    README's test command."""
    readme = (ROOT / "README.md").read_text()
    first_table = readme.index("\n|")
    assert readme.index("python3 tasks.py lab") < first_table
    assert readme.index("python3 tasks.py test") < first_table
    assert readme.index("Docker") < readme.index("python3 tasks.py lab")
    assert "python3 tasks.py test" in (ROOT / ".ci" / "run").read_text()
