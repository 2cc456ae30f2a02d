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
# # 05 · Export and deploy
#
# A trained model is deployed without the training framework: as a file that a small runtime
# executes. Two common routes:
#
# * **Keras / TensorFlow → SavedModel → TFLite** (LiteRT): SavedModel is TensorFlow's
#   serving format (TF Serving, TF.js converters); TFLite is a flat, compact file for phones,
#   microcontrollers and CPUs, run by an *interpreter*.
# * **PyTorch → ONNX → ONNX Runtime**: ONNX is an open graph format that many runtimes
#   execute (ONNX Runtime on servers, browsers and phones; TensorRT; OpenVINO).
#
# After each conversion we check what matters: the exported model predicts what the original
# predicted, to float32 tolerance. All files go under `$DLLAB_RUNS` (default `./runs`).

# %%
import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's C++ start-up log lines

import time
import warnings

import keras
import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import torch

from dllab import check, labs

exercise = labs.exercises("05_export_and_deploy")
if keras.backend.backend() == "torch":  # torch.export rejects the input structure Keras 3.15 passes
    raise RuntimeError(
        "Keras on PyTorch cannot export a SavedModel: restart the kernel with "
        "KERAS_BACKEND=tensorflow (the default) or jax"
    )
tf.get_logger().setLevel("ERROR")  # SavedModel export logs each folder it writes
logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # warns about torchvision ops we never use

X_train, X_test, y_train, y_test = labs.digits()
num_epochs = labs.pick(full=20, fast=3)
hidden = 128
out = labs.runs_dir("05_export", time.strftime("%Y%m%d-%H%M%S"))
print("artefacts go to", out)

# %% [markdown]
# ## Keras → SavedModel
#
# First, a model worth exporting: the digits MLP of labs 03 and 04, trained briefly.

# %%
keras.utils.set_random_seed(0)
net = keras.Sequential(
    [
        keras.Input((X_train.shape[1],)),
        keras.layers.Dense(hidden, activation="relu"),
        keras.layers.Dense(hidden, activation="relu"),
        keras.layers.Dense(10),
    ]
)
net.compile(
    optimizer=keras.optimizers.SGD(learning_rate=0.1, momentum=0.9),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
net.fit(X_train, y_train, epochs=num_epochs, batch_size=64, verbose=0)
y_hat = net.predict(X_test, verbose=0)
print("Keras test accuracy:", np.mean(y_hat.argmax(axis=1) == y_test))

# %% [markdown]
# `model.export()` writes a SavedModel with one inference function, `serve`, traced for a
# batch of any size. It works from Keras's TensorFlow and JAX backends; from the PyTorch
# backend, Keras 3.15 fails inside `torch.export` (hence the check at the top). Reloading it needs TensorFlow but not Keras, nor the Python code that
# defined the model.

# %%
saved_model_dir = out / "digits_savedmodel"
net.export(saved_model_dir, format="tf_saved_model", verbose=False)
reloaded = tf.saved_model.load(str(saved_model_dir))
y_hat_saved = reloaded.serve(tf.constant(X_test)).numpy()
print("signatures:", list(reloaded.signatures))
check.close("SavedModel predicts like Keras", y_hat_saved, y_hat, atol=1e-5)

# %% [markdown]
# ## SavedModel → TFLite
#
# The converter turns the graph into TFLite's own op set and a single flat file. The
# interpreter that runs it now lives in the separate **LiteRT** package (`ai_edge_litert`);
# TensorFlow 2.21 still ships the old `tf.lite.Interpreter` but marks it deprecated, so we use
# LiteRT when it is installed.

# %%
tflite_bytes = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir)).convert()
tflite_path = out / "digits.tflite"
tflite_path.write_bytes(tflite_bytes)
print(f"{tflite_path.name}: {len(tflite_bytes):,} bytes")

try:
    from ai_edge_litert.interpreter import Interpreter

    print("interpreter: LiteRT (ai_edge_litert)")
except ImportError:
    Interpreter = tf.lite.Interpreter
    print("interpreter: tf.lite.Interpreter (LiteRT is not installed)")


def load_interpreter(model_bytes):
    """A TFLite interpreter for model_bytes (the deprecation warning of tf.lite's is noted above)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return Interpreter(model_content=model_bytes)


interpreter = load_interpreter(tflite_bytes)
inputs = interpreter.get_input_details()[0]
print("input shape:", inputs["shape"], "| shape signature:", inputs["shape_signature"])

# %% [markdown]
# The input is allocated for **one** example (`shape`), although the signature allows any
# batch size (`-1`). The simplest way to run it: one row at a time: set the input tensor,
# `invoke()`, read the output tensor.


# %%
def tflite_predict_each(model_bytes, X):
    """Logits for every row of X, one invoke() per row."""
    interpreter = load_interpreter(model_bytes)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    rows = []
    for row in X:
        interpreter.set_tensor(input_index, row[None, :])
        interpreter.invoke()
        rows.append(interpreter.get_tensor(output_index)[0])
    return np.stack(rows)


y_hat_tflite = tflite_predict_each(tflite_bytes, X_test)
check.close("TFLite predicts like Keras", y_hat_tflite, y_hat, atol=1e-4)

# %% [markdown]
# ## PyTorch → ONNX → ONNX Runtime
#
# The same architecture in PyTorch, trained briefly with full-batch Adam.

# %%
torch.manual_seed(0)
net_torch = torch.nn.Sequential(
    torch.nn.Linear(X_train.shape[1], hidden),
    torch.nn.ReLU(),
    torch.nn.Linear(hidden, hidden),
    torch.nn.ReLU(),
    torch.nn.Linear(hidden, 10),
)
optimizer = torch.optim.Adam(net_torch.parameters(), lr=1e-2)
X, y = torch.from_numpy(X_train), torch.from_numpy(y_train)
for _ in range(labs.pick(full=200, fast=40)):
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(net_torch(X), y).backward()
    optimizer.step()
net_torch.eval()
with torch.no_grad():
    y_hat_torch = net_torch(torch.from_numpy(X_test)).numpy()
print("PyTorch test accuracy:", np.mean(y_hat_torch.argmax(axis=1) == y_test))

# %% [markdown]
# `torch.onnx.export(..., dynamo=True)` captures the model with `torch.export` and translates
# it with **onnxscript**. `dynamic_shapes` marks dimension 0 as a variable batch size (without
# it the file would accept exactly one row). `external_data=False` keeps the weights inside the
# `.onnx` file; large models store them in a separate `.onnx.data` file that must travel with it.

# %%
onnx_path = out / "digits.onnx"
torch.onnx.export(
    net_torch,
    (torch.from_numpy(X_test[:1]),),
    str(onnx_path),
    input_names=["X"],
    output_names=["y_hat"],
    dynamic_shapes=({0: torch.export.Dim("batch")},),
    external_data=False,
    dynamo=True,
    verbose=False,
)
model = onnx.load(str(onnx_path))
onnx.checker.check_model(model)
print(
    f"{onnx_path.name}: {onnx_path.stat().st_size:,} bytes, opset {model.opset_import[0].version}"
)
print("ops:", [node.op_type for node in model.graph.node])

session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
print("inputs:", [(i.name, i.shape) for i in session.get_inputs()])
y_hat_onnx = session.run(None, {"X": X_test})[0]
check.close("ONNX Runtime predicts like PyTorch", y_hat_onnx, y_hat_torch, atol=1e-5)

# %% [markdown]
# ## Exercises
#
# **1.** One `invoke()` per row is slow. Write `tflite_predict(interpreter, X)` that runs the
# whole batch in one `invoke()` of a freshly loaded interpreter: **resize** its input to
# `X.shape` with `resize_tensor_input`, then `allocate_tensors()`, set, invoke, get.


# %%
@exercise
def tflite_predict(interpreter, X):
    """Logits for all rows of X with a single TFLite invoke()."""
    raise NotImplementedError


# %%
check.close(
    "batched TFLite predicts like Keras",
    lambda: tflite_predict(load_interpreter(tflite_bytes), X_test),
    y_hat,
    atol=1e-4,
    hint="interpreter.resize_tensor_input(input_index, X.shape) comes before allocate_tensors()",
)

# %% [markdown]
# **2.** Post-training **quantization** stores weights as 8-bit integers: about 4× smaller, at
# a small cost in accuracy. Write `quantized_tflite(saved_model_dir)` returning the TFLite bytes
# converted with `converter.optimizations = [tf.lite.Optimize.DEFAULT]`.


# %%
@exercise
def quantized_tflite(saved_model_dir):
    """TFLite bytes of the SavedModel with dynamic-range (int8 weight) quantization."""
    raise NotImplementedError


# %%
def accuracy(logits):
    return float(np.mean(np.asarray(logits).argmax(axis=1) == y_test))


check.that(
    "quantized TFLite is under half the size",
    lambda: len(quantized_tflite(str(saved_model_dir))) < len(tflite_bytes) / 2,
    hint="set converter.optimizations before converter.convert()",
)
check.that(
    "quantized TFLite loses under 2 points of accuracy",
    lambda: (
        accuracy(tflite_predict_each(quantized_tflite(str(saved_model_dir)), X_test))
        > accuracy(y_hat) - 0.02
    ),
    hint="quantize the weights only (Optimize.DEFAULT), without a representative dataset",
)

# %% [markdown]
# **3.** ONNX Runtime quantizes too. Write `quantize_onnx(src, dst)` that writes an int8
# version of the ONNX file `src` to `dst` with `onnxruntime.quantization.quantize_dynamic`.


# %%
@exercise
def quantize_onnx(src, dst):
    """Write an int8-weight copy of the ONNX model at src to dst."""
    raise NotImplementedError


# %%
def quantized_onnx_logits():
    dst = out / "digits.int8.onnx"
    quantize_onnx(str(onnx_path), str(dst))
    if dst.stat().st_size >= onnx_path.stat().st_size / 2:
        raise ValueError(f"{dst.name} is {dst.stat().st_size:,} bytes: not much smaller")
    quantized = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    return quantized.run(None, {"X": X_test})[0]


check.that(
    "int8 ONNX is smaller and loses under 2 points of accuracy",
    lambda: accuracy(quantized_onnx_logits()) > accuracy(y_hat_torch) - 0.02,
    hint="quantize_dynamic(src, dst, weight_type=QuantType.QInt8)",
)

# %% [markdown]
# ## Summary
#
# * Export, reload, and **compare predictions** on real inputs: a conversion that runs is not
#   yet a conversion that is right.
# * SavedModel and ONNX keep a dynamic batch dimension only if you ask; TFLite allocates for one
#   row until you resize its input.
# * Quantization trades a little accuracy for a ~4× smaller model; measure both.
# * Next: [06 · which is faster?](06_which_is_faster.py)
