"""The cuda image where no GPU is: it is a CUDA build, and says plainly why it cannot use one."""

from __future__ import annotations

import json

from dllab import devices


def test_torch_and_tensorflow_are_cuda_builds(containers, cuda_image):
    """torch.version.cuda and tf.test.is_built_with_cuda() prove the CUDA builds are installed."""
    code, out = containers.output(cuda_image, ["python", "-c", (
        "import torch, tensorflow as tf\n"
        "print('torch-cuda', torch.version.cuda)\n"
        "print('tf-cuda', tf.test.is_built_with_cuda(), tf.sysconfig.get_build_info()['cudnn_version'])\n"
    )])  # fmt: skip
    assert code == 0, out
    lines = dict(
        line.split(" ", 1) for line in out.splitlines() if line.startswith(("torch-", "tf-"))
    )
    assert lines["torch-cuda"].startswith("13.")
    assert lines["tf-cuda"].startswith("True 9")


def test_doctor_expecting_cuda_without_a_gpu_exits_1_with_the_gpus_hint(containers, cuda_image):
    """With no driver, doctor fails and tells the user to run with --gpus all."""
    if devices.nvidia_driver():
        import pytest

        pytest.skip("a GPU is visible here: the no-GPU path cannot be shown")
    code, out = containers.output(cuda_image, ["python", "-m", "dllab", "doctor", "--json"])
    assert code == 1, out
    report = json.loads(out[out.index("{") :])
    assert report["expect"] == "cuda"
    torch_problem = next(p for p in report["problems"] if p.startswith("torch "))
    assert (
        "CUDA build but no NVIDIA driver visible: run the container with --gpus all"
        in torch_problem
    )


def test_the_gpu_sharing_environment_is_set(client, cuda_image):
    """TF grows GPU memory, XLA does not preallocate, the toolkit exposes every GPU."""
    env = dict(item.split("=", 1) for item in client.images.get(cuda_image).attrs["Config"]["Env"])
    assert env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all" and env["DLLAB_ACCELERATOR"] == "cuda"


def test_exactly_one_cudnn_and_nccl_the_lock_chose(containers, cuda_image):
    """The cuDNN and NCCL files on disk are the versions the lock pins, owned by one package each."""
    from dllab import locks, variants

    pins = locks.pins(variants.get("cuda").lock("linux-x86_64"))
    code, out = containers.output(cuda_image, ["bash", "-c", (
        "cd /opt/venv/lib/python3.11/site-packages/nvidia"
        " && grep -hE 'define CUDNN_(MAJOR|MINOR) ' cudnn/include/cudnn_version.h"
        " && grep -hE 'define NCCL_(MAJOR|MINOR) ' nccl/include/nccl.h"
        " && grep -l 'nvidia/cudnn/lib/libcudnn.so.9,' ../nvidia_cudnn*/RECORD"
    )])  # fmt: skip
    assert code == 0, out
    numbers = [line.split()[-1] for line in out.splitlines() if line.startswith("#define")]
    assert ".".join(numbers[:2]) == ".".join(pins["nvidia-cudnn-cu13"].split(".")[:2])
    assert ".".join(numbers[2:4]) == ".".join(pins["nvidia-nccl-cu13"].split(".")[:2])
    assert len([line for line in out.splitlines() if line.endswith("RECORD")]) == 1
