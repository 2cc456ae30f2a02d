"""dllab: one TensorFlow + PyTorch + Keras lab for CPU, CUDA and Metal, that proves its device."""

__version__ = "0.1.0"
