"""Model export formats that need no device runtime dependency beyond numpy.

``tflite``: a chain of int8 FULLY_CONNECTED ops as a ``.tflite`` flatbuffer, written
without TensorFlow.
"""

from .tflite import build_tflite_model, write_tflite_model

__all__ = ["build_tflite_model", "write_tflite_model"]
