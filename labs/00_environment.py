# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · What each framework sees on this machine
#
# TensorFlow, PyTorch, JAX and Keras each find the hardware on their own: one can see a GPU
# while another, installed as a CPU-only build, cannot. Before training anything, ask every one
# of them. This lab uses `dllab doctor`, the same check you can run in a terminal
# (`python -m dllab doctor`), then asks the frameworks directly, and ends with two exercises.
#
# **Why a fresh process per framework?** Keras 3 reads `KERAS_BACKEND` once, when it is first
# imported, so Keras on TensorFlow, on PyTorch and on JAX are three different programs. The
# doctor starts one small process per target and collects what each reports.

# %%
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's C++ start-up log lines

import keras
import tensorflow as tf
import torch

from dllab import check, doctor, labs
from dllab.frameworks import device_kind

exercise = labs.exercises("00_environment")

# %%
report = doctor.diagnose()
print(doctor.render(report))

# %% [markdown]
# ## Reading the report
#
# * The first line is the machine: platform, Python, the **variant** this environment was built
#   as (`DLLAB_VARIANT`: cpu, cuda or metal), whether it runs in a container, and the NVIDIA
#   driver the kernel exposes (inside a container: only when it was started with `--gpus`).
# * One row per target: its version, how it was built (CUDA and cuDNN versions, Metal plugin,
#   JAX backend) and the devices it sees. `keras-torch` is Keras with the PyTorch backend.
# * The last line compares every row with the accelerator the variant promises
#   (`DLLAB_ACCELERATOR`). A CPU variant promises only the CPU.
#
# The report is plain data, so a program can act on it:

# %%
print("system:", report["system"])
for row in report["frameworks"]:
    print(
        f"{row['target']:18} {[d['kind'] for d in row.get('devices', [])]}", row.get("error") or ""
    )

# %% [markdown]
# ## How to fix what it finds
#
# Each problem comes with its fix. To see them without a GPU, ask what the doctor *would* say
# if this environment had promised CUDA:

# %%
cuda_problems = doctor.problems(report["frameworks"], "cuda", report["system"])
for problem in cuda_problems or ["none: every framework sees a CUDA GPU"]:
    print("-", problem)

# %% [markdown]
# The usual causes:
#
# | symptom | cause | fix |
# |---|---|---|
# | a CPU-only build | the cpu variant (or a PyPI wheel without CUDA) | `invoke build --variant cuda` |
# | CUDA build, no driver visible | container started without GPUs | `invoke lab --variant cuda` (adds `--gpus all`); install the NVIDIA Container Toolkit on the host |
# | driver visible, no GPU seen | driver too old for the framework's CUDA | torch's CUDA 13 build needs driver ≥ 580, TF's CUDA 12 build ≥ 525: check `nvidia-smi` |
# | TF on a Mac sees no GPU | tensorflow-metal missing, or TF newer than 2.18 | the metal environment pins a TF that the plugin loads into |
#
# Run `python -m dllab doctor --train` to also train a few steps on the promised device.

# %% [markdown]
# ## Asking the frameworks directly
#
# The doctor is a thin wrapper around these calls. Inside one process you can import all the
# frameworks side by side; only Keras's backend is fixed at import.

# %%
tf_kinds = {device_kind(d.device_type) for d in tf.config.list_physical_devices()}
torch_kinds = (
    {"cpu"}
    | ({"cuda"} if torch.cuda.is_available() else set())
    | ({"mps"} if torch.backends.mps.is_available() else set())
)
print("TensorFlow:", tf.config.list_physical_devices())
print(
    "PyTorch:   ",
    "cuda" if torch.cuda.is_available() else "no cuda",
    "|",
    "mps" if torch.backends.mps.is_available() else "no mps",
)
print("Keras:     ", keras.backend.backend(), "backend (from KERAS_BACKEND, default tensorflow)")

# %% [markdown]
# JAX ships only in the cpu variant. `labs.require` says so, instead of failing, where it is
# missing:

# %%
if labs.require("jax"):
    import jax

    print("JAX:       ", jax.devices())

# %% [markdown]
# On a CPU, the number of cores matters for every timing in labs 02 and 06. A container may be
# allowed fewer cores than the machine has; the frameworks size their thread pools from what
# they detect.

# %%
print(
    "cores this process may use:",
    len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
)
print("torch intra-op threads:    ", torch.get_num_threads())

# %% [markdown]
# ## Exercises
#
# **1.** Write `device_kinds(report, target)`: the set of device kinds (`"cpu"`, `"cuda"`,
# `"mps"`) that `target` (e.g. `"torch"`, `"keras-jax"`) sees according to a doctor report.
# A target that is missing from the report, or that failed, sees nothing: return an empty set.


# %%
@exercise
def device_kinds(report, target):
    """The set of device kinds `target` sees in `report`; empty if it is absent or failed."""
    raise NotImplementedError


# %%
check.equal("TensorFlow's devices", lambda: device_kinds(report, "tensorflow"), tf_kinds)
check.equal("PyTorch's devices", lambda: device_kinds(report, "torch"), torch_kinds)
missing = {"frameworks": [{"target": "jax", "installed": False, "error": "not installed"}]}
check.equal("a missing framework sees nothing", lambda: device_kinds(missing, "jax"), set())

# %% [markdown]
# **2.** Training code usually picks the best device it can see. Write `pick_device(kinds)`:
# `"cuda"` if it is among `kinds`, else `"mps"` if it is, else `"cpu"`. The result is a valid
# argument to `torch.device(...)`.


# %%
@exercise
def pick_device(kinds):
    """The best of `kinds`: cuda, then mps, then cpu."""
    raise NotImplementedError


# %%
check.equal("only a CPU", lambda: pick_device({"cpu"}), "cpu")
check.equal("a CUDA GPU", lambda: pick_device({"cpu", "cuda"}), "cuda")
check.equal("Apple silicon", lambda: pick_device({"mps", "cpu"}), "mps")

# %% [markdown]
# ## Summary
#
# * Each framework discovers devices itself; `python -m dllab doctor` asks all of them, each in
#   a fresh process, and says how to fix what is not as promised.
# * Keras's backend is chosen once, at `import keras`, from `KERAS_BACKEND`.
# * Next: [01 · tensors and automatic differentiation](01_tensors_autodiff.py).
