"""A new image revision updates the learner's labs at start, keeping every edit and deletion."""

from __future__ import annotations

import io
import secrets

import pytest

from tests.image.conftest import as_invoke_lab_does, work_dir

pytestmark = [pytest.mark.docker, pytest.mark.slow]

UNTOUCHED, EDITED, DELETED = "01_tensors_autodiff.py", "03_keras_backends.py", "02_graphs.py"
REVISION_2 = "\n# dllab-test: revision 2 of this lab\n"


@pytest.fixture
def second_revision(client, cpu_image):
    """dllab:cpu with three labs changed under /opt/dllab/labs, removed after the test."""
    tag = f"dllab-test-labs:{secrets.token_hex(4)}"
    labs = " ".join(f"/opt/dllab/labs/{name}" for name in (UNTOUCHED, EDITED, DELETED))
    dockerfile = (
        f"FROM {cpu_image}\nUSER root\n"
        f"RUN printf '{REVISION_2.encode('unicode_escape').decode()}' | tee -a {labs} > /dev/null\n"
        "USER 1000:1000\n"
    )
    image, _ = client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, forcerm=True,
        network_mode="none", labels={"dllab.test": "image"},
    )  # fmt: skip
    try:
        yield tag
    finally:
        client.images.remove(image.id, force=True)


def test_a_new_revision_updates_untouched_labs_keeps_edits_beside_and_deletions(
    containers, cpu_image, second_revision, tmp_path
):
    """Started on revision 1, the learner edits 03, deletes 02 and leaves 01; started on revision
    2: 01 is the new one, 03 is theirs with 03_keras_backends.new.py beside it (one line in the
    log and in LAB-UPDATES.txt), 02 stays deleted."""
    work = work_dir(tmp_path)
    options = as_invoke_lab_does(work)
    code, log = containers.output(cpu_image, ["true"], **options)
    assert code == 0, log
    labs = work / "labs"
    shipped = (labs / EDITED).read_text()
    assert REVISION_2 not in shipped
    (labs / EDITED).write_text(shipped + "\nmy_answer = 42\n")
    (labs / DELETED).unlink()

    code, log = containers.output(second_revision, ["true"], **options)
    assert code == 0, log
    assert (labs / UNTOUCHED).read_text().endswith(REVISION_2)
    assert (labs / EDITED).read_text() == shipped + "\nmy_answer = 42\n"
    assert (labs / "03_keras_backends.new.py").read_text() == shipped + REVISION_2
    said = [line for line in log.splitlines() if "03_keras_backends.new.py" in line]
    assert len(said) == 1, log
    assert (labs / "LAB-UPDATES.txt").read_text().count("03_keras_backends.new.py") == 1
    assert not (labs / DELETED).exists() and not (labs / "02_graphs.new.py").exists()
    assert not (labs / "01_tensors_autodiff.new.py").exists()
    owners = {(path.stat().st_uid, path.stat().st_gid) for path in labs.rglob("*")}
    assert owners == {(1000, 1000)}, owners
