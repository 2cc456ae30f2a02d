"""Bring the image's labs into the learner's work folder without ever losing the learner's edits.

`python -m dllab.labsync /opt/dllab/labs /work/labs` (docker/dllab-start, as the lab user, at
every start). `MANIFEST` in the work folder remembers what was shipped: each file's hash when it
was last copied there. Then, for each lab of the image:

- new to this work folder: copied;
- as shipped (the learner did not edit it): replaced by the image's version if that changed;
- edited by the learner, and changed in the image too: theirs stays, the image's goes beside it
  (`03_keras_backends.new.py`), with one line saying so, in the log and in `NOTICE`;
- shipped once and deleted by the learner: stays deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST = ".dllab-shipped.json"
NOTICE = "LAB-UPDATES.txt"
SKIPPED = {"__pycache__", ".ipynb_checkpoints"}


@dataclass
class Report:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    beside: list[tuple[str, str]] = field(default_factory=list)  # (theirs, the new one)
    first: bool = False  # no manifest yet: the first start on this work folder

    def lines(self) -> list[str]:
        return [
            f"labs/{theirs} has your edits and this image brings a new version of it: "
            f"the new one is labs/{new}, yours is unchanged"
            for theirs, new in self.beside
        ]


def digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def shipped_files(source: Path) -> list[str]:
    """The image's labs, as paths relative to `source`, in a stable order."""
    return sorted(
        path.relative_to(source).as_posix()
        for path in source.rglob("*")
        if path.is_file() and not SKIPPED.intersection(path.relative_to(source).parts)
    )


def beside_name(rel: str) -> str:
    """Where the image's version of an edited lab goes: a/03_x.py -> a/03_x.new.py."""
    path = Path(rel)
    return (path.parent / f"{path.stem}.new{path.suffix}").as_posix()


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    temporary = dest.with_name(f".{dest.name}.dllab-tmp")
    shutil.copyfile(src, temporary)
    os.replace(temporary, dest)


def read_manifest(dest: Path) -> dict[str, str]:
    try:
        files = json.loads((dest / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {k: v for k, v in files.items() if isinstance(k, str) and isinstance(v, str)}


def sync(source: Path, dest: Path) -> Report:
    """Update `dest` from `source` as the module docstring says; return what was done."""
    report = Report(first=not (dest / MANIFEST).exists())
    shipped = read_manifest(dest)
    recorded: dict[str, str] = {}
    for rel in shipped_files(source):
        new = digest(source / rel)
        recorded[rel] = new
        target = dest / rel
        before = shipped.get(rel)
        if not target.exists():
            if before is None:  # never shipped here: a new lab
                _copy(source / rel, target)
                report.added.append(rel)
            continue  # shipped, then deleted by the learner: stays deleted
        theirs = digest(target)
        if theirs == new:
            continue
        if theirs == before:  # as shipped: the learner never edited it
            _copy(source / rel, target)
            report.updated.append(rel)
        elif before != new:  # both changed (or unknown history): keep theirs, the new one beside
            _copy(source / rel, dest / beside_name(rel))
            report.beside.append((rel, beside_name(rel)))
    dest.mkdir(parents=True, exist_ok=True)
    temporary = dest / f".{MANIFEST}.tmp"
    temporary.write_text(json.dumps({"version": 1, "files": recorded}, indent=1) + "\n")
    os.replace(temporary, dest / MANIFEST)
    if report.beside:
        with (dest / NOTICE).open("a") as notice:
            notice.writelines(line + "\n" for line in report.lines())
    return report


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m dllab.labsync IMAGE_LABS WORK_LABS", file=sys.stderr)
        return 64
    report = sync(Path(args[0]), Path(args[1]))
    # On stderr, and nothing on a first start: `docker run IMAGE COMMAND` prints only its own
    # output (JSON included); the container's log has every line.
    changed = [*([] if report.first else report.added), *report.updated]
    if changed:
        print(f"dllab: labs updated from this image: {', '.join(changed)}", file=sys.stderr)
    for line in report.lines():
        print(f"dllab: {line}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
