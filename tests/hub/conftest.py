"""A hub of its own for the tests: own state folder, own instance (`hubtest`), all removed."""

from __future__ import annotations

import shutil

import pytest

from dllab import variants
from dllab.containers import any_free_port, engine_answers, image_exists
from tests.hub.client import Hub, hub_env, remove_everything
from tests.support import missing


@pytest.fixture(scope="session")
def engine_and_image():
    if not engine_answers():
        missing("docker", "no Docker engine answers (start one: .ci/engine)")
    image = variants.get("cpu").image
    if not image_exists(image):
        missing("image-cpu", f"no {image} image: run `invoke build --variant cpu`")
    if not shutil.which("npm"):
        missing("docker", "no npm: configurable-http-proxy installs from npm (Node.js >= 20)")


@pytest.fixture(scope="module")
def hub_settings() -> dict[str, str]:
    """More DLLAB_HUB_* settings for a module's hub (a module overrides this fixture)."""
    return {}


@pytest.fixture(scope="module")
def hub(engine_and_image, tmp_path_factory, hub_settings):
    """`python -m dllab.hub start` on a free port; stopped, and its users' volumes removed, after."""
    remove_everything()
    running = Hub(any_free_port(), tmp_path_factory.mktemp("hub"), {})
    running.env = {**hub_env(running.state), **hub_settings}
    result = running.start("--admin", "teacher")
    if result.returncode != 0:
        log = running.state / "hub.log"
        pytest.fail(result.stderr + (log.read_text()[-3000:] if log.exists() else ""))
    yield running
    running.cli("stop")
    remove_everything()
