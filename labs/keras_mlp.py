"""Train one Keras MLP on scikit-learn's digits; print the result as one JSON line.

Keras picks its backend once, at `import keras`, from KERAS_BACKEND, so each backend needs a
process of its own. Labs 03 and 06 run this script once per backend:

    KERAS_BACKEND=jax python keras_mlp.py --epochs 10

Every epoch is timed: the first includes tracing and compiling, so it is the warm-up.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's C++ start-up log lines

import keras

from dllab import labs
from dllab.frameworks.keras import compile_sgd, mlp


class EpochTimer(keras.callbacks.Callback):
    """Seconds per training epoch."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args()

    X_train, X_test, y_train, y_test = labs.digits()
    keras.utils.set_random_seed(0)  # same seed, but each backend draws different numbers from it
    # The MLP every framework trains in labs 03-06 (and dllab's workers): two ReLU layers, then logits.
    net = mlp(X_train.shape[1], args.hidden, 10)
    compile_sgd(net, args.lr, momentum=0.9, metrics=("accuracy",))
    timer = EpochTimer()
    net.fit(
        X_train,
        y_train,
        batch_size=args.batch_size,
        epochs=args.epochs,
        verbose=0,
        callbacks=[timer],
    )
    _, accuracy = net.evaluate(X_test, y_test, verbose=0)
    result = {
        "backend": keras.backend.backend(),
        "jit_compile": net.jit_compile,
        "accuracy": accuracy,
        "train_samples": len(X_train),
        "epoch_seconds": timer.seconds,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
