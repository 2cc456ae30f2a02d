"""Doctor's verdicts and hints, from fake reports of machines this one cannot be (GPU, Mac)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from dllab import devices, doctor, smoke, variants
from dllab.__main__ import main
from dllab.frameworks import TARGETS, Target
from dllab.runner import Done
from tests.support import require_frameworks

LINUX = {"platform": "linux-x86_64", "variant": None, "nvidia_driver": None}
MAC = {"platform": "macos-arm64", "variant": "metal", "nvidia_driver": None}


def seen(target, *kinds, **build):
    """A probe result of `target` seeing devices of `kinds`."""
    return {
        "target": target,
        "installed": True,
        "error": None,
        "version": "1.0",
        "build": build,
        "devices": [{"name": k, "kind": k} for k in kinds],
    }


def test_cpu_expected_and_seen_is_no_problem():
    """Frameworks that see the CPU pass --expect cpu."""
    assert doctor.problems([seen("torch", "cpu"), seen("keras-torch", "cpu")], "cpu", LINUX) == []


def test_cuda_build_without_driver_says_run_with_gpus_all():
    """A CUDA build with no driver visible gets the --gpus all / Container Toolkit hint."""
    [problem] = doctor.problems([seen("torch", "cpu", cuda="13.0")], "cuda", LINUX)
    assert "torch sees no cuda" in problem
    assert "CUDA build but no NVIDIA driver visible: run the container with --gpus all" in problem
    assert "NVIDIA Container Toolkit" in problem


def test_cpu_only_build_expecting_cuda_says_use_the_cuda_variant():
    """A CPU-only torch cannot see a GPU whatever the driver: use the cuda variant."""
    [problem] = doctor.problems(
        [seen("torch", "cpu", cuda=None)], "cuda", {**LINUX, "nvidia_driver": "580.1"}
    )
    assert "CPU-only build: use the cuda variant (invoke build --variant cuda)" in problem


def test_driver_visible_but_no_gpu_names_the_driver_and_its_floor():
    """With a driver but no device, the hint names the driver and the version torch needs."""
    [problem] = doctor.problems(
        [seen("torch", "cpu", cuda="13.0")], "cuda", {**LINUX, "nvidia_driver": "535.54"}
    )
    assert "driver 535.54 is visible" in problem and ">= 580" in problem


def test_keras_must_place_tensors_on_the_accelerator_not_merely_see_it():
    """Keras passes only when its first (placement) device is the promised one."""
    keras_on_cpu = {**seen("keras-torch", "cpu", backend="torch")}
    keras_on_cpu["devices"].append({"name": "cuda:0", "kind": "cuda"})
    [problem] = doctor.problems([keras_on_cpu], "cuda", LINUX)
    assert problem.startswith("keras-torch sees no cuda") and "fix torch first" in problem


def test_tensorflow_without_metal_plugin_on_a_mac_says_install_it():
    """On a Mac, TF with no tensorflow-metal is told to use the metal environment."""
    [problem] = doctor.problems([seen("tensorflow", "cpu", metal_plugin=None)], "mps", MAC)
    assert "tensorflow-metal is not installed" in problem


def test_tensorflow_metal_that_did_not_load_names_the_tf_pin():
    """tensorflow-metal present but no GPU: the hint is the TF 2.18 pin."""
    [problem] = doctor.problems([seen("tensorflow", "cpu", metal_plugin="1.2.0")], "mps", MAC)
    assert "tensorflow-metal 1.2.0 did not load: it needs tensorflow 2.18.x" in problem


def test_mps_expected_on_linux_says_macos_only():
    """mps cannot exist on Linux: the hint says so instead of blaming a framework."""
    [problem] = doctor.problems([seen("torch", "cpu")], "mps", LINUX)
    assert "only on macOS with Apple silicon (this is linux-x86_64)" in problem


def test_missing_framework_fails_only_when_the_variant_promises_it():
    """jax missing is fine in a variant without JAX, a problem in one that ships it."""
    missing = {"target": "jax", "installed": False, "error": "not installed: no jax"}

    def torch_on(kind: str) -> dict:
        return {"target": "torch", "installed": True, "devices": [{"kind": kind, "name": kind}]}

    assert doctor.problems([missing, torch_on("cuda")], "cuda", {**LINUX, "variant": "cuda"}) == []
    [problem] = doctor.problems([missing, torch_on("cpu")], "cpu", {**LINUX, "variant": "cpu"})
    assert "jax: not installed, but the cpu variant promises it" in problem


def test_a_crashed_probe_is_a_problem_with_its_reason():
    """A framework whose import crashed is reported with the crash, not ignored."""
    crashed = {
        "target": "tensorflow",
        "installed": True,
        "error": "crashed (exit -11): Segmentation fault",
    }
    assert doctor.problems([crashed], "cpu", LINUX) == [
        "tensorflow: crashed (exit -11): Segmentation fault"
    ]


def test_every_accelerator_has_a_fix_hint():
    """Each accelerator a variant can promise has its own hints."""
    assert set(doctor.HINTS) == set(variants.ACCELERATORS)


def test_training_failures_name_device_loss_and_parameters():
    """A run on the wrong device whose loss rose and weights froze fails three ways."""
    run = {
        "device": "cpu",
        "device_kind": "cpu",
        "losses": [0.5, 0.7],
        "params_changed": False,
        "error": None,
    }
    found = smoke.failures(run, "cuda")
    assert found == [
        "trained on cpu (cpu), not on cuda",
        "loss did not fall: 0.5000 -> 0.7000",
        "parameters did not change",
    ]
    assert smoke.failures({**run, "losses": [0.7, 0.5], "params_changed": True}, "cpu") == []


def test_render_lists_each_framework_and_the_verdict():
    """The table has a row per framework and ends with NOT OK and the problems."""
    report = {
        "system": {**LINUX, "python": "3.11", "in_container": False},
        "expect": "cuda",
        "frameworks": [seen("torch", "cpu", cuda="13.0")],
        "problems": ["torch sees no cuda: x"],
    }
    text = doctor.render(report)
    assert "torch" in text and "cuda 13.0" in text
    assert text.splitlines()[-2:] == ["NOT OK: expected cuda:", "  - torch sees no cuda: x"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["doctor", "--expect", "gpu"],
            "dllab: unknown accelerator 'gpu': choose one of cpu, cuda, mps",
        ),
        (["frobnicate"], "dllab: argument command: invalid choice"),
        (["train", "keras[jax]"], "dllab: argument target: invalid choice: 'keras[jax]'"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_2(capsys, argv, message):
    """Unknown accelerators and commands give one dllab: line, exit 2, no traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and len(err.strip().splitlines()) == 1


def test_doctor_json_exits_1_with_a_hint_when_cuda_is_expected_here():
    """On this CPU machine --expect cuda fails, as JSON a tool can read (real frameworks)."""
    require_frameworks()
    proc = subprocess.run(
        [sys.executable, "-m", "dllab", "doctor", "--json", "--expect", "cuda"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["expect"] == "cuda" and report["problems"]
    assert all("cuda" in p for p in report["problems"])


def test_with_no_framework_installed_doctor_says_where_they_are():
    """Nothing installed is a problem (exit 1), not an all-clear: the frameworks are in the image."""
    results = [{"target": t.name, "installed": False} for t in TARGETS]
    [found] = doctor.problems(results, "cpu", {"variant": None})
    assert "no framework is installed here" in found and "invoke doctor --variant cpu" in found


def test_training_shows_a_line_per_framework_as_it_starts_and_ends(monkeypatch):
    """--train says which framework trains now and how it went, on the log (stderr), not in the report."""
    probes = [seen("torch", "cpu"), seen("jax", "cpu")]
    monkeypatch.setattr(devices, "probe_all", lambda: probes)
    monkeypatch.setattr(
        smoke, "train", lambda target, accelerator: {"failures": [], "seconds": 1.25}
    )
    log = io.StringIO()
    found = doctor.diagnose("cpu", train=True, log=log)
    assert found["problems"] == []
    assert log.getvalue().splitlines() == [
        f"dllab doctor: asking {len(TARGETS)} frameworks what they see ...",
        "dllab doctor: training torch on cpu ...",
        "dllab doctor: torch: ok (1.2 s)",
        "dllab doctor: training jax on cpu ...",
        "dllab doctor: jax: ok (1.2 s)",
    ]


def test_target_names_are_shell_and_docker_safe_and_parse_back():
    """Every target's name parses back to it, and none holds a character a shell globs or Docker refuses."""
    for target in TARGETS:
        assert Target.parse(target.name) == target
        assert not set(target.name) & set("[]*? ")
    assert Target.parse("keras-jax") == Target("keras", "jax")


def test_children_share_one_gpu_unless_the_user_says_otherwise():
    """Each child asks JAX and TF not to take the whole GPU; the user's own setting wins."""
    env = devices.child_env(Target("keras", "jax"), {"XLA_PYTHON_CLIENT_PREALLOCATE": "true"})
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "true"
    assert env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert env["KERAS_BACKEND"] == "jax"
    assert devices.child_env(Target("jax"), {})["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"


@pytest.mark.parametrize(
    ("done", "error"),
    [
        (Done(124, err="timed out after 300 s"), "timed out after 300 s"),
        (
            Done(1, err="Traceback ...\nImportError: libcudart.so.13"),
            "crashed (exit 1): ImportError: libcudart.so.13",
        ),
        (
            Done(
                0, out="warming up\nDLLAB_RESULT " + json.dumps({"target": "torch", "error": None})
            ),
            None,
        ),
    ],
)
def test_a_child_that_hangs_or_crashes_is_reported_as_data(monkeypatch, done, error):
    """run_child turns a time-out or a crash into the result's error, and reads the result line."""

    class Answer:
        def __call__(self, cmd, **kwargs):
            assert cmd[1:4] == ["-m", "dllab.frameworks", "probe"] and kwargs["timeout"] == 300
            return done

    monkeypatch.setattr(devices, "Runner", Answer)
    assert devices.run_child(Target("torch"), "probe", timeout=300)["error"] == error
