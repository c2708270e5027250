"""INT8 quantization maths shared by the host pipeline and the device runtime (numpy only)."""

from __future__ import annotations

import numpy as np

QMAX = 127  # symmetric int8 weights use [-127, 127], as TFLite does


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round to nearest, ties away from zero (C ``round``/TfLiteRound), unlike np.round."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def quantize_symmetric(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric INT8: ``weights ≈ q * scale[:, None]``.

    weights: (out, in) float. Returns q (out, in) int8 in [-127, 127] and scale (out,)
    float32 > 0. An all-zero row gets scale 1.0 (any positive scale represents it exactly,
    and the kernels need a positive scale). Rounding error per element is at most scale/2.
    """
    weights = np.asarray(weights, dtype=np.float32)
    if weights.ndim != 2:
        raise ValueError(f"expected a 2-D weight matrix, got shape {weights.shape}")
    max_abs = np.abs(weights).max(axis=1)
    scale = np.where(max_abs > 0, max_abs / QMAX, 1.0).astype(np.float32)
    q = np.clip(round_half_away(weights / scale[:, None]), -QMAX, QMAX).astype(np.int8)
    return q, scale


def dequantize_symmetric(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quantize_symmetric`: float32 (out, in)."""
    return q.astype(np.float32) * np.asarray(scale, dtype=np.float32)[:, None]
