"""Exporting models to devices.

``tflite``: int8 FULLY_CONNECTED chains as a ``.tflite`` flatbuffer, written without
TensorFlow. ``personalized`` (``fedlora export``): a client's personalized model as a
device bundle, a C header and a ``.tflite``; it needs torch, so it is not imported here.
``convert`` and ``run_source`` are its parts: torch model → device-runtime model, and
finished run → torch model; ``calibration`` holds the statistics and weight choices
``convert`` makes (numpy only; see ``docs/calibration.md``).
"""

from .tflite import build_tflite_model, write_tflite_model

__all__ = ["build_tflite_model", "write_tflite_model"]
