"""A lab kernel imports the frameworks quietly: nothing on stderr the learner did not ask for."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from tests.image.conftest import TOKEN, api, as_invoke_lab_does, host_port, work_dir

IMPORTS = """
import tensorflow as tf
import torch
import jax
import keras
from tensorflow.python.util import _pywrap_util_port
print(tf.__version__, torch.__version__, jax.__version__, keras.__version__, keras.backend.backend())
print("onednn", _pywrap_util_port.IsMklEnabled())
"""
ASKED = "import os, sys\nos.write(2, b'asked-fd\\n')\nprint('asked-py', file=sys.stderr)"


def run_cells(container, kernel: str, cells: list[str], timeout: float = 300) -> list[dict]:
    """Execute each cell in the kernel over its websocket: per cell, its iopub streams and reply."""
    from tornado.websocket import websocket_connect

    async def session() -> list[dict]:
        url = f"ws://127.0.0.1:{host_port(container)}/api/kernels/{kernel}/channels?token={TOKEN}"
        ws = await websocket_connect(url)
        results = []
        for code in cells:
            msg_id = uuid.uuid4().hex
            ws.write_message(json.dumps({
                "channel": "shell",
                "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": "test",
                           "username": "test", "version": "5.3"},
                "parent_header": {}, "metadata": {},
                "content": {"code": code, "silent": False, "store_history": False,
                            "user_expressions": {}, "allow_stdin": False},
            }))  # fmt: skip
            seen = {"stdout": "", "stderr": "", "reply": None, "idle": False}
            deadline = time.monotonic() + timeout
            while not (seen["idle"] and seen["reply"]) and time.monotonic() < deadline:
                raw = await asyncio.wait_for(ws.read_message(), timeout=timeout)
                if raw is None:
                    break
                message = json.loads(raw)
                if message.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = message["msg_type"], message["content"]
                if kind == "stream":
                    seen[content["name"]] += content["text"]
                elif kind == "error":
                    seen["stderr"] += "\n".join(content["traceback"])
                elif kind == "status" and content["execution_state"] == "idle":
                    seen["idle"] = True
                elif kind == "execute_reply":
                    seen["reply"] = content["status"]
            results.append(seen)
        ws.close()
        return results

    return asyncio.run(session())


@pytest.mark.docker
@pytest.mark.slow
def test_importing_the_frameworks_in_a_lab_kernel_prints_nothing_on_stderr(
    containers, cpu_image, tmp_path
):
    """A kernel started through the REST API of a lab started as `invoke lab` starts it imports
    tensorflow, torch, jax and keras with no stderr stream at all (no absl banner, no oneDNN
    notice), oneDNN still on; what the learner writes to stderr, at fd or Python level, shows."""
    lab = containers.run(cpu_image, **as_invoke_lab_does(work_dir(tmp_path), TOKEN))
    containers.wait_healthy(lab)
    kernel = api(lab, "/api/kernels", "POST", {"name": "python3"})["id"]
    imported, asked = run_cells(lab, kernel, [IMPORTS, ASKED])

    assert imported["reply"] == "ok", imported
    assert imported["stderr"] == "", f"the imports printed on stderr:\n{imported['stderr']}"
    assert "onednn True" in imported["stdout"], imported
    assert asked["reply"] == "ok", asked
    assert "asked-fd" in asked["stderr"] and "asked-py" in asked["stderr"], asked


def test_the_filter_applies_tf_cpp_min_log_level_to_absl_lines_and_keeps_the_rest():
    """Only absl lines below the level (with their continuation lines) and absl's banner go."""
    import runpy
    from pathlib import Path

    config = Path(__file__).parents[2] / "docker" / "ipython_kernel_config.py"
    kept = runpy.run_path(str(config))["_kept"]
    text = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1795700468.801497      23 port.cc:153] oneDNN custom operations are on.\n"
        "  its second line\n"
        "W0000 00:00:1795700468.901497      23 foo.cc:7] a warning\n"
        "plain output from C\n"
    )
    assert kept(text, 1) == (
        "W0000 00:00:1795700468.901497      23 foo.cc:7] a warning\nplain output from C\n"
    )
    assert kept(text, 0) == text.split("\n", 1)[1]
    assert kept(text, 2) == ""
