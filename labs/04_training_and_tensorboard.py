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
# # 04 · Training end to end, logged to TensorBoard
#
# We train the same classifier twice, once in plain TensorFlow and once in PyTorch, with the
# same data, architecture, optimizer and hyperparameters, and log both runs to one TensorBoard
# log directory so their curves appear on the same charts. Then we read the event files back
# to prove the numbers arrived.
#
# The data: scikit-learn's 1,797 handwritten digits, 8×8 pixels each, shipped with the
# package (no download). The model: a multi-layer perceptron, 64 → 128 → 128 → 10.

# %%
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's C++ start-up log lines

import itertools
import shutil
import time

import numpy as np
import tensorflow as tf
import torch
from IPython.display import Markdown, display
from tensorboard.backend.event_processing import event_accumulator
from torch.utils.tensorboard import SummaryWriter

from dllab import check, labs

exercise = labs.exercises("04_training_and_tensorboard")

X_train, X_test, y_train, y_test = labs.digits()
num_epochs = labs.pick(full=30, fast=4)
lr = 0.1
momentum = 0.9
batch_size = 64
hidden = 128
sizes = [X_train.shape[1], hidden, hidden, 10]

# One folder per run, under $DLLAB_RUNS (default ./runs): TensorBoard shows each subfolder as a run.
logdir = labs.runs_dir("04_training", time.strftime("%Y%m%d-%H%M%S"))
print(f"{len(X_train)} training and {len(X_test)} test digits; logging to {logdir}")

# %% [markdown]
# ## TensorFlow
#
# Without Keras, a TensorFlow model is a `tf.Module` holding `tf.Variable`s. The training step
# is a `tf.function` (one graph for the whole step, see lab 02): forward pass under a
# `GradientTape`, gradients, then SGD with momentum written out by hand,
# $v \leftarrow \mu v + g$, $w \leftarrow w - \text{lr}\, v$, which is what `torch.optim.SGD`
# does too. `tf.summary` writes scalars into an event file in the writer's folder.


# %%
class MLP(tf.Module):
    def __init__(self, sizes, seed=0):
        super().__init__()
        rng = tf.random.Generator.from_seed(seed)
        # Glorot-uniform initial weights: the scale that keeps activations from growing or vanishing
        self.weights = [
            tf.Variable(rng.uniform((m, n), -np.sqrt(6 / (m + n)), np.sqrt(6 / (m + n))))
            for m, n in itertools.pairwise(sizes)
        ]
        self.biases = [tf.Variable(tf.zeros(n)) for n in sizes[1:]]

    def __call__(self, X):
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            X = tf.nn.relu(X @ w + b)
        return X @ self.weights[-1] + self.biases[-1]


net = MLP(sizes)
velocity = [tf.Variable(tf.zeros_like(p)) for p in net.trainable_variables]


@tf.function
def train_step(X, y):
    with tf.GradientTape() as tape:
        y_hat = net(X)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, y_hat))
    grads = tape.gradient(loss, net.trainable_variables)
    for p, v, g in zip(net.trainable_variables, velocity, grads, strict=True):
        v.assign(momentum * v + g)
        p.assign_sub(lr * v)
    return loss


batches = (
    tf.data.Dataset.from_tensor_slices((X_train, y_train))
    .shuffle(len(X_train), seed=0)
    .batch(batch_size)
)
writer = tf.summary.create_file_writer(str(logdir / "tensorflow"))
history_tf = {"loss/train": [], "accuracy/test": []}
for epoch in range(num_epochs):
    loss = np.mean([train_step(X, y).numpy() for X, y in batches])
    accuracy = np.mean(np.argmax(net(X_test).numpy(), axis=1) == y_test)
    with writer.as_default(step=epoch):
        tf.summary.scalar("loss/train", loss)
        tf.summary.scalar("accuracy/test", accuracy)
    history_tf["loss/train"].append(float(loss))
    history_tf["accuracy/test"].append(float(accuracy))
writer.close()
print("TensorFlow: test accuracy per epoch", np.round(history_tf["accuracy/test"], 3))

# %% [markdown]
# ## PyTorch
#
# The same model as `nn.Sequential`, the same optimizer from `torch.optim`, batches from a
# `DataLoader`. The loop spells out what `tf.function` hid: clear the accumulated gradients,
# forward, loss, `backward()`, step. `SummaryWriter` (PyTorch's TensorBoard writer) logs the
# same tags, so TensorBoard overlays the two runs.

# %%
torch.manual_seed(0)
net = torch.nn.Sequential(
    torch.nn.Linear(sizes[0], sizes[1]),
    torch.nn.ReLU(),
    torch.nn.Linear(sizes[1], sizes[2]),
    torch.nn.ReLU(),
    torch.nn.Linear(sizes[2], sizes[3]),
)
optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
loss_fn = torch.nn.CrossEntropyLoss()
loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(torch.from_numpy(X_train), torch.from_numpy(y_train)),
    batch_size=batch_size,
    shuffle=True,
)

writer = SummaryWriter(log_dir=str(logdir / "torch"))
history_torch = {"loss/train": [], "accuracy/test": []}
for epoch in range(num_epochs):
    net.train()
    losses = []
    for X, y in loader:
        optimizer.zero_grad()
        loss = loss_fn(net(X), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    net.eval()
    with torch.no_grad():  # no graph needed to evaluate: faster, less memory
        accuracy = (net(torch.from_numpy(X_test)).argmax(dim=1).numpy() == y_test).mean()
    writer.add_scalar("loss/train", np.mean(losses), epoch)
    writer.add_scalar("accuracy/test", accuracy, epoch)
    history_torch["loss/train"].append(float(np.mean(losses)))
    history_torch["accuracy/test"].append(float(accuracy))
writer.close()
print("PyTorch:    test accuracy per epoch", np.round(history_torch["accuracy/test"], 3))

# %% [markdown]
# ## Did the scalars arrive? Reading event files back
#
# TensorBoard's `EventAccumulator` reads a run's event files. Two details matter:
#
# * TensorFlow 2's `tf.summary.scalar` stores each value as a **tensor** event (tagged for the
#   scalars plugin), while PyTorch's `add_scalar` writes classic **scalar** events. TensorBoard
#   shows both as scalars; a reader must look in both places.
# * By default the accumulator *samples* tensor events (it keeps 10 per tag); `size_guidance`
#   with 0 keeps them all.


# %%
def read_scalars(run_dir):
    """{tag: [values by step]} from the event files in run_dir, written by TF or PyTorch."""
    acc = event_accumulator.EventAccumulator(
        str(run_dir),
        size_guidance={event_accumulator.SCALARS: 0, event_accumulator.TENSORS: 0},
    )
    acc.Reload()
    scalars = {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    for tag in acc.Tags()["tensors"]:
        scalars[tag] = [float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]
    return scalars


logged = {framework: read_scalars(logdir / framework) for framework in ("tensorflow", "torch")}
for framework, history in (("tensorflow", history_tf), ("torch", history_torch)):
    for tag, values in history.items():
        check.close(
            f"{framework} {tag} in the event file",
            np.array(logged[framework].get(tag, [])),
            values,
            atol=1e-6,
        )

# %% [markdown]
# Both trained, to similar accuracy (they start from different random weights and see the
# batches in a different order):

# %%
for name, history in (("TensorFlow", history_tf), ("PyTorch", history_torch)):
    check.that(
        f"{name} learned the digits",
        history["accuracy/test"][-1] > labs.pick(full=0.95, fast=0.85),
        hint="accuracy is low: was the learning rate changed?",
    )

# %% [markdown]
# ## Open TensorBoard
#
# TensorBoard already runs inside your lab, behind its login, at **`/tensorboard/`** of the
# address JupyterLab has in your browser. It reads `runs/` in your work folder (`/work/runs`,
# where `$DLLAB_RUNS` points in dllab's container) and starts on your first visit (a few seconds).
#
# * **Your own lab** (`invoke lab`): the *TensorBoard* tile in JupyterLab's Launcher, or the link
#   below; `invoke tensorboard` prints the full address, with your lab's token.
# * **A class hub**: `/user/<your name>/tensorboard/` on the hub's address (the link below).
#
# In the *Scalars* tab, `loss/train` and `accuracy/test` show one curve per run folder:
# `04_training/<time>/tensorflow` and `…/torch`. A TensorBoard started from a terminal in the
# container (`tensorboard --logdir runs`) would listen on a port your browser cannot reach:
# only JupyterLab's port leaves the container. Outside dllab's container (a native environment,
# such as the metal variant on a Mac), `invoke tensorboard --variant metal` starts TensorBoard and
# prints its address.

# %%
# dllab's container serves TensorBoard at /tensorboard/; a hub puts each learner's lab under
# /user/<name>/ and tells the lab so in JUPYTERHUB_SERVICE_PREFIX.
prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
if prefix or os.path.exists("/.dockerenv"):
    link = f"[Open TensorBoard]({prefix or '/'}tensorboard/)"
    display(Markdown(f"{link}: this lab's runs are under `04_training/{logdir.name}/`"))
else:
    print("Not in dllab's container: `invoke tensorboard --variant metal` (your variant) starts it")

# %% [markdown]
# ## Exercises
#
# Write the logging yourself, once per framework: each function writes `values[i]` as the
# scalar `tag` at step `i` into the folder `run_dir`. The check reads them back with
# `read_scalars`. (Remember to flush or close the writer: events are buffered.)


# %%
@exercise
def log_scalars_tf(run_dir, tag, values):
    """Write values[i] at step i under tag, with tf.summary."""
    raise NotImplementedError


@exercise
def log_scalars_torch(run_dir, tag, values):
    """Write values[i] at step i under tag, with torch.utils.tensorboard.SummaryWriter."""
    raise NotImplementedError


# %%
def logged_back(log, framework, tag="exercise/halving", values=(0.5, 0.25, 0.125)):
    """Log `values` with `log` into an empty folder, and read them back."""
    run_dir = logdir / f"exercise-{framework}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a rerun must not find the last run's events
    log(run_dir, tag, list(values))
    return np.array(read_scalars(run_dir).get(tag, []))


check.close(
    "tensorflow: logged values read back",
    lambda: logged_back(log_scalars_tf, "tensorflow"),
    [0.5, 0.25, 0.125],
    hint="nothing read back? close the writer, or call writer.flush()",
)
check.close(
    "torch: logged values read back",
    lambda: logged_back(log_scalars_torch, "torch"),
    [0.5, 0.25, 0.125],
    hint="nothing read back? close the writer, or call writer.flush()",
)

# %% [markdown]
# ## Summary
#
# * A training loop is the same four steps everywhere: forward, loss, gradients, update.
#   TensorFlow wraps them in a `GradientTape` and a `tf.function`; PyTorch spells them out.
# * Both write TensorBoard event files; give runs the same tag names to compare them on one
#   chart, and one folder per run.
# * TF 2 logs scalars as tensor events: read them with `Tensors()`, not `Scalars()`.
# * Next: [05 · export and deploy](05_export_and_deploy.py).
