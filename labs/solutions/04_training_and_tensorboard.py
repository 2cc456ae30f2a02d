"""Reference solutions for 04_training_and_tensorboard.py."""

import tensorflow as tf
from torch.utils.tensorboard import SummaryWriter


def log_scalars_tf(run_dir, tag, values):
    """Write values[i] at step i under tag, with tf.summary."""
    writer = tf.summary.create_file_writer(str(run_dir))
    with writer.as_default():
        for step, value in enumerate(values):
            tf.summary.scalar(tag, value, step=step)
    writer.close()


def log_scalars_torch(run_dir, tag, values):
    """Write values[i] at step i under tag, with torch.utils.tensorboard.SummaryWriter."""
    with SummaryWriter(log_dir=str(run_dir)) as writer:
        for step, value in enumerate(values):
            writer.add_scalar(tag, value, step)
