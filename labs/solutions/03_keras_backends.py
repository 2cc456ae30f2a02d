"""Reference solutions for 03_keras_backends.py."""

import keras


def stable_softmax(logits):
    """softmax(logits) = exp(logits) / sum(exp(logits)), without overflow, using keras.ops."""
    exps = keras.ops.exp(logits - keras.ops.max(logits))
    return exps / keras.ops.sum(exps)


def build_net(num_features, num_classes, hidden):
    """An MLP: num_features -> hidden (ReLU) -> hidden (ReLU) -> num_classes logits."""
    inputs = keras.Input((num_features,))
    x = keras.layers.Dense(hidden, activation="relu")(inputs)
    x = keras.layers.Dense(hidden, activation="relu")(x)
    outputs = keras.layers.Dense(num_classes)(x)
    return keras.Model(inputs, outputs)
