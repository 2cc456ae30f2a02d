"""The labs teach the TensorBoard address that works in dllab's container, and it answers there."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request

from dllab.variants import ROOT
from tests.image.conftest import TOKEN, as_invoke_lab_does, host_port, work_dir

LAB = ROOT / "labs" / "04_training_and_tensorboard.py"
TEXTS = [ROOT / "labs" / "README.md", *sorted((ROOT / "labs").rglob("*.py"))]
# Lab 04's writer and folder (dllab.labs.runs_dir, under the image's DLLAB_RUNS), run in the lab.
WRITE = (
    "from dllab import labs; from torch.utils.tensorboard import SummaryWriter\n"
    "writer = SummaryWriter(labs.runs_dir('04_training', 'check') / 'torch')\n"
    "writer.add_scalar('loss/train', 0.5, 0); writer.close()\n"
)


def test_the_labs_name_no_tensorboard_address_that_fails_in_the_container():
    """No localhost:6006, --bind_all or %tensorboard (only JupyterLab's port leaves the container);
    lab 04 and the labs' README name /tensorboard/ and the hub's /user/<name>/tensorboard/."""
    for path in TEXTS:
        text = path.read_text()
        for wrong in ("localhost:6006", "127.0.0.1:6006", "--bind_all", "%tensorboard"):
            assert wrong not in text, f"{path.relative_to(ROOT)} still says {wrong}"
    for path in (LAB, ROOT / "labs" / "README.md"):
        text = path.read_text()
        assert "`/tensorboard/`" in text and "/user/<your name>/tensorboard/" in text, path


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


def test_the_address_lab_04_names_shows_its_runs_and_the_launcher_offers_it(containers, cpu_image, tmp_path):  # fmt: skip
    """In a lab started as `invoke lab` starts one, the address lab 04 names lists a run written
    where lab 04 writes, and JupyterLab's Launcher has a TensorBoard tile."""
    path = re.search(r"at \*\*`(/\w+/)`\*\*", LAB.read_text()).group(1)
    container = containers.run(cpu_image, **as_invoke_lab_does(work_dir(tmp_path), TOKEN))
    containers.wait_healthy(container)
    code, out = container.exec_run(["python", "-c", WRITE])
    assert code == 0, out.decode()
    base = f"http://127.0.0.1:{host_port(container)}"
    # TensorBoard starts on the first visit; on a busy machine past jupyter-server-proxy's 60 s
    # (an error page), so ask again until it lists the run.
    deadline, runs = time.monotonic() + 180, None
    while runs is None or "04_training/check/torch" not in runs:
        assert time.monotonic() < deadline, f"TensorBoard at {path} lists {runs}"
        try:
            runs = get_json(f"{base}{path}data/runs?token={TOKEN}")
        except urllib.error.HTTPError as error:
            assert error.code >= 500, error  # 403/404: the address itself is wrong
        time.sleep(1)
    info = get_json(f"{base}/server-proxy/servers-info?token={TOKEN}")["server_processes"]
    tile = next(server["launcher_entry"] for server in info if server["name"] == "tensorboard")
    assert tile["enabled"] and tile["title"] == "TensorBoard", tile
