"""Reference solutions for 05_export_and_deploy.py."""

import tensorflow as tf
from onnxruntime.quantization import QuantType, quantize_dynamic


def tflite_predict(interpreter, X):
    """Logits for all rows of X with a single TFLite invoke()."""
    input_index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(input_index, X.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(input_index, X)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def quantized_tflite(saved_model_dir):
    """TFLite bytes of the SavedModel with dynamic-range (int8 weight) quantization."""
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def quantize_onnx(src, dst):
    """Write an int8-weight copy of the ONNX model at src to dst."""
    quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
