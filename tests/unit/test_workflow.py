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
    """Jobs are named after the variants, and each runs `invoke test --variant <name>`."""
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    assert set(jobs) == set(variants.VARIANTS)
    for name, job in jobs.items():
        runs = [step.get("run", "") for step in job["steps"]]
        assert any(f"invoke test --variant {name}" in run for run in runs), name


def test_the_cuda_job_needs_a_gpu_runner():
    """The cuda job runs on a self-hosted GPU label, never a hosted CPU runner."""
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["cuda"]
    assert "self-hosted" in job["runs-on"] and "gpu" in job["runs-on"]
