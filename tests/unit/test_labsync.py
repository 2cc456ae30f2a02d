"""dllab.labsync: a new image's labs reach the learner; the learner's edits and deletions stay."""

from __future__ import annotations

import json

from dllab import labsync


def ship(image, files: dict[str, str]):
    for rel, text in files.items():
        (image / rel).parent.mkdir(parents=True, exist_ok=True)
        (image / rel).write_text(text)


def first_start(tmp_path):
    image, work = tmp_path / "image", tmp_path / "work" / "labs"
    ship(image, {"01_a.py": "a1", "03_b.py": "b1", "solutions/03_b.py": "s1"})
    report = labsync.sync(image, work)
    assert sorted(report.added) == ["01_a.py", "03_b.py", "solutions/03_b.py"]
    assert (work / "solutions/03_b.py").read_text() == "s1"
    assert set(json.loads((work / labsync.MANIFEST).read_text())["files"]) == set(report.added)
    return image, work


def test_a_lab_the_learner_did_not_edit_is_updated(tmp_path, capsys):
    """A new image's version replaces a lab that is still as shipped; nothing is put beside it.
    The first start says nothing (`docker run IMAGE CMD` prints only CMD's output); later ones
    name what changed, on stderr."""
    image, work = first_start(tmp_path)
    assert labsync.main([str(image), str(tmp_path / "other")]) == 0
    assert capsys.readouterr() == ("", "")
    ship(image, {"03_b.py": "b2", "04_new.py": "n1"})
    report = labsync.sync(image, work)
    assert report.updated == ["03_b.py"] and report.added == ["04_new.py"]
    ship(image, {"03_b.py": "b3"})
    assert labsync.main([str(image), str(work)]) == 0
    out, err = capsys.readouterr()
    assert out == "" and err == "dllab: labs updated from this image: 03_b.py\n", err
    assert (work / "03_b.py").read_text() == "b3"
    ship(image, {"03_b.py": "b2"})
    labsync.sync(image, work)
    assert (work / "03_b.py").read_text() == "b2" and (work / "04_new.py").read_text() == "n1"
    assert not (work / "03_b.new.py").exists() and not (work / labsync.NOTICE).exists()


def test_an_edited_lab_stays_and_the_new_one_goes_beside_it_with_one_line(tmp_path, capsys):
    """Both changed: the learner's file is untouched, the image's is 03_b.new.py, one line says
    so in the log and in LAB-UPDATES.txt, and the next start does not say it again."""
    image, work = first_start(tmp_path)
    (work / "03_b.py").write_text("b1 + my answer")
    ship(image, {"03_b.py": "b2"})
    assert labsync.main([str(image), str(work)]) == 0
    assert (work / "03_b.py").read_text() == "b1 + my answer"
    assert (work / "03_b.new.py").read_text() == "b2"
    logged = [line for line in capsys.readouterr().err.splitlines() if "03_b.new.py" in line]
    assert len(logged) == 1 and "labs/03_b.py" in logged[0], logged
    assert (work / labsync.NOTICE).read_text().splitlines() == [logged[0].removeprefix("dllab: ")]
    again = labsync.sync(image, work)
    assert not again.beside and not again.updated
    assert (work / "03_b.py").read_text() == "b1 + my answer"


def test_a_lab_the_learner_deleted_stays_deleted(tmp_path):
    """Deleted after it was shipped: not brought back, not even when the image changes it."""
    image, work = first_start(tmp_path)
    (work / "01_a.py").unlink()
    assert not labsync.sync(image, work).added
    ship(image, {"01_a.py": "a2"})
    report = labsync.sync(image, work)
    assert not report.added and not report.updated and not report.beside
    assert not (work / "01_a.py").exists() and not (work / "01_a.new.py").exists()
