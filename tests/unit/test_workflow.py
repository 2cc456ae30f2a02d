"""The users' CI workflow: valid against GitHub's schema, one job per variant."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from dllab import variants
from dllab.variants import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def test_workflow_validates_against_the_github_workflow_schema():
    """check-jsonschema's bundled GitHub workflow schema accepts ci.yml."""
    if not shutil.which("check-jsonschema"):
        pytest.skip("check-jsonschema is not installed (pip install -e '.[dev]')")
    proc = subprocess.run(
        ["check-jsonschema", "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_one_job_per_variant_runs_that_variants_tests():
    """Jobs are named after the variants (or variant-platform, for a second platform's runner),
    and each runs `invoke test --variant <variant>`; publish-* jobs release what those tested."""
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    assert set(variants.VARIANTS) <= set(jobs)
    for name, job in jobs.items():
        if name.startswith("publish-"):
            continue
        variant, _, platform = name.partition("-")
        assert variant in variants.VARIANTS, name
        assert not platform or platform in variants.get(variant).platforms, name
        runs = [step.get("run", "") for step in job["steps"]]
        assert any(f"invoke test --variant {variant}" in run for run in runs), name


def test_the_arm64_job_builds_natively_on_an_arm64_runner():
    """cpu on linux-aarch64: a native arm64 runner, no emulation, and the arm64 image tests."""
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["cpu-linux-aarch64"]
    assert job["runs-on"].endswith("-arm")
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    assert "qemu" not in runs and "--platform" not in runs  # the host's platform is arm64
    assert "invoke build --variant cpu" in runs and "tests/image/test_arm64_image.py" in runs
    assert "--expect cpu --train" in runs


def test_the_cuda_job_needs_a_gpu_runner():
    """The cuda job runs on a self-hosted GPU label, never a hosted CPU runner."""
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["cuda"]
    assert "self-hosted" in job["runs-on"] and "gpu" in job["runs-on"]


def test_a_release_tag_publishes_cpu_from_native_runners_then_one_index():
    """On a v* tag only, after the cpu jobs pass: an amd64 and an arm64 runner (no emulation)
    each build and publish, logged in by Docker's own login (no password to dllab); a last job
    makes the index of both; the SBOM is attached to each platform's image."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert "v*" in workflow[True]["push"]["tags"]  # YAML 1.1 reads the key `on` as True
    jobs = workflow["jobs"]
    build, index = jobs["publish-cpu"], jobs["publish-cpu-index"]
    assert set(build["needs"]) == {"cpu", "cpu-linux-aarch64"} and index["needs"] == ["publish-cpu"]
    assert sorted(build["strategy"]["matrix"]["runner"]) == ["ubuntu-24.04", "ubuntu-24.04-arm"]
    for job in (build, index):
        assert job["if"] == "startsWith(github.ref, 'refs/tags/v')"
        assert job["permissions"] == {"contents": "read", "packages": "write"}
        steps = job["steps"]
        logins = [s for s in steps if s.get("uses", "").startswith("docker/login-action@")]
        assert len(logins) == 1 and logins[0]["with"]["password"] == "${{ secrets.GITHUB_TOKEN }}"
        runs = "\n".join(s.get("run", "") for s in steps)
        assert (
            'invoke publish --variant cpu --registry "ghcr.io/${GITHUB_REPOSITORY_OWNER,,}"' in runs
        )
        assert "password" not in runs and "--platform" not in runs and "qemu" not in runs
    build_runs = "\n".join(s.get("run", "") for s in build["steps"])
    assert "invoke build --variant cpu" in build_runs and "oras attach" in build_runs
    assert "invoke build" not in "\n".join(s.get("run", "") for s in index["steps"])
