"""deploy/CLASS.md's backup and restore commands, run as written (with the tests' names) on a real
engine: a learner's work goes into an archive and comes back, owners and labels included."""

from __future__ import annotations

import re
import subprocess

import pytest

from dllab import containers, variants
from dllab import hub as dllab_hub
from dllab.variants import ROOT
from tests.hub.client import as_instance, hub_name

pytestmark = pytest.mark.docker

CHECKLIST = ROOT / "deploy" / "CLASS.md"
HUB = hub_name()
VOLUME = f"{HUB}-work-alice"


def recipes() -> list[str]:
    """The two bash blocks after the marker comment: backup, then restore, with the tests' names."""
    text = CHECKLIST.read_text().split("tests/hub/test_class_recipes.py runs this block", 1)[1]
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)[:2]
    assert len(blocks) == 2, "CLASS.md lost its backup or restore block"
    image = variants.get("cpu").image
    return [
        re.sub(r"^hub=\S+", f"hub={HUB}", block, flags=re.M).replace("dllab:cpu", image)
        for block in (re.sub(r"^ {4}", "", b, flags=re.M) for b in blocks)
    ]


def docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([containers.DOCKER, *args], capture_output=True, text=True)


def run_as_written(block: str, folder) -> None:
    """Run a block of the checklist with bash, in `folder`, stopping at its first failure."""
    done = subprocess.run(["bash", "-euc", block], cwd=folder, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def in_volume(*command: str) -> str:
    """Run `command` as root in a throw-away container with the volume at /work; its stdout."""
    image = variants.get("cpu").image
    result = docker("run", "--rm", "--network", "none", "--user", "root", "--entrypoint", command[0],
                    "--volume", f"{VOLUME}:/work", image, *command[1:])  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_backup_then_restore_gives_a_learner_their_work_back(engine_and_image, tmp_path):
    """A file alice wrote is archived by the backup loop, survives the volume's deletion, and
    the restore puts it back with its owner (her UID) into her volume, which the hub made again
    (labelled as this hub's)."""
    backup, restore = recipes()
    with as_instance():
        labels = dllab_hub.labels(**{"dllab.learner": "alice"})
    label_args = containers.label_args(labels)
    docker("volume", "rm", "--force", VOLUME)
    docker("volume", "create", *label_args, VOLUME)
    try:
        in_volume("bash", "-c", "mkdir /work/labs && echo 'my answer' > /work/labs/mine.py && chown -R 123456:123456 /work/labs")  # fmt: skip
        run_as_written(backup, tmp_path)
        assert (tmp_path / "backups" / f"{VOLUME}.tar.gz").stat().st_size > 0
        assert docker("volume", "rm", VOLUME).returncode == 0
        assert subprocess.run(["bash", "-euc", restore], cwd=tmp_path, capture_output=True).returncode  # fmt: skip
        docker("volume", "create", *label_args, VOLUME)  # as the hub makes it at her next start
        run_as_written(restore, tmp_path)
        assert in_volume("stat", "-c", "%u:%g %n", "/work/labs/mine.py").split() == ["123456:123456", "/work/labs/mine.py"]  # fmt: skip
        assert in_volume("cat", "/work/labs/mine.py") == "my answer\n"
        found = docker("volume", "inspect", "--format", "{{json .Labels}}", VOLUME).stdout
        assert f'"dllab.hub":"{HUB}"' in found and '"dllab.learner":"alice"' in found
    finally:
        docker("volume", "rm", "--force", VOLUME)
