"""INT8 quantization maths shared by the host pipeline and the device runtime (numpy only).

Scales and zero points, computed the way TFLite computes them, so that what the runtime
derives from a layer is what TFLM derives from the same layer in a ``.tflite``:

* weights: int8, symmetric (zero point 0) in [−127, 127], per output channel;
* activations: int8, asymmetric, ``real = scale · (q − zero_point)``, parameters chosen
  from a calibrated (min, max) range that is widened to include 0 (TFLite
  ``GetAsymmetricQuantizationParams``);
* bias: int32, zero point 0, scale ``s_in · s_w`` (a float32 product);
* effective output scale of a fully-connected op (TFLM ``fully_connected_common.cc``):
  per-tensor ``(double)(float32(s_in) · float32(s_w)) / s_out`` — the product is a
  float32 multiply — and per-channel ``(double)s_in · (double)s_w[c] / (double)s_out``;
* fused activation clamp (TFLite ``CalculateActivationRangeQuantized``): NONE [−128, 127];
  RELU ``[max(−128, z_out), 127]``; RELU6 upper bound ``min(127, z_out + round(6/s_out))``
  with the division in float32.

All scales are float32, as in a ``.tflite``; a Python float is rounded to float32 first.
The fixed-point rescaling itself lives in :mod:`.fixed_point` and is re-exported here.
"""

from __future__ import annotations

import numpy as np

from .fixed_point import (
    INT32_MAX,
    INT32_MIN,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    round_half_away,
)

__all__ = [
    "QMAX",
    "INT8_MIN",
    "INT8_MAX",
    "ACTIVATIONS",
    "round_half_away",
    "quantize_symmetric",
    "dequantize_symmetric",
    "asymmetric_params_from_range",
    "quantize_activation",
    "dequantize_activation",
    "quantize_bias",
    "effective_output_scale",
    "activation_range",
    "quantize_multiplier",
    "multiply_by_quantized_multiplier",
]

QMAX = 127  # symmetric int8 weights use [-127, 127], as TFLite does
INT8_MIN, INT8_MAX = -128, 127

ACTIVATIONS: tuple[str, ...] = ("none", "relu", "relu6")


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


def asymmetric_params_from_range(min_value: float, max_value: float) -> tuple[float, int]:
    """int8 activation ``(scale, zero_point)`` for a calibrated range, as TFLite picks them.

    The range is widened to include 0 (so 0.0 is exactly representable, which zero padding
    and ReLU need), ``scale = (max − min) / 255`` in float32, and the zero point
    ``−128 − min/scale`` is rounded half away from zero and clamped to [−128, 127] — the
    "nudged" zero point. Returns scale as a Python float holding a float32 value.
    Raises ``ValueError`` for a degenerate [0, 0] range (TFLite would emit scale 0, which
    no kernel accepts) or non-finite bounds.
    """
    lo, hi = np.float32(min_value), np.float32(max_value)
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
        raise ValueError(f"calibrated range must be finite with min <= max, got [{lo}, {hi}]")
    lo, hi = min(lo, np.float32(0)), max(hi, np.float32(0))
    qmin, qmax = np.float32(INT8_MIN), np.float32(INT8_MAX)
    scale = (hi - lo) / (qmax - qmin)  # float32 arithmetic throughout, as in the C++
    if scale == 0:
        raise ValueError(
            "calibrated range is [0, 0]: the activation is constant zero, so no scale can be "
            "derived; calibrate on data that exercises this layer"
        )
    zero_point_from_min = qmin - lo / scale
    if zero_point_from_min < qmin:
        zero_point = INT8_MIN
    elif zero_point_from_min > qmax:
        zero_point = INT8_MAX
    else:
        zero_point = int(round_half_away(zero_point_from_min))
    return float(scale), zero_point


def quantize_activation(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float activations to int8: ``clamp(round(x / scale) + zero_point, −128, 127)``.

    The division is float32 and the rounding half away from zero (``TfLiteRound``), as the
    TFLite converter quantizes constants. Returns int8 of ``x``'s shape.
    """
    q = round_half_away(np.asarray(x, dtype=np.float32) / np.float32(scale))
    return np.clip(q + zero_point, INT8_MIN, INT8_MAX).astype(np.int8)


def dequantize_activation(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """int8 activations to float32: ``scale · (q − zero_point)``."""
    return (np.asarray(q, dtype=np.int32) - zero_point).astype(np.float32) * np.float32(scale)


def quantize_bias(bias: np.ndarray, input_scale: float, weight_scale: np.ndarray) -> np.ndarray:
    """Float bias (out,) to int32 with scale ``s_in · s_w`` (TFLite ``SymmetricBiasQuantize``).

    The scale is a float32 product, its inverse ``1.0 / scale`` is rounded to float32, and
    ``round(bias · inverse)`` saturates to [−(2³¹ − 1), 2³¹ − 1]. ``weight_scale`` is (1,)
    for per-tensor weights or (out,) per channel.
    """
    scale = np.float32(input_scale) * np.asarray(weight_scale, dtype=np.float32)
    inverse = (1.0 / scale.astype(np.float64)).astype(np.float32)
    q = round_half_away(np.asarray(bias, dtype=np.float32) * inverse)
    # Clip in float64: float32 cannot hold 2³¹ − 1 and would round it up to 2³¹.
    return np.clip(q.astype(np.float64), -INT32_MAX, INT32_MAX).astype(np.int32)


def effective_output_scale(
    input_scale: float, weight_scale: np.ndarray, output_scale: float
) -> np.ndarray:
    """Real factor from accumulator units to output units, per output channel (float64).

    weight_scale: (1,) selects per-tensor semantics (float32 product ``s_in·s_w``), (out,)
    per-channel semantics (product in double). Returns float64 of ``weight_scale``'s shape.
    """
    s_in = np.float32(input_scale)
    s_w = np.asarray(weight_scale, dtype=np.float32).reshape(-1)
    s_out = np.float64(np.float32(output_scale))
    if s_w.size == 1:  # TFLM: is_per_channel = (number of scales > 1)
        return np.array([np.float64(s_in * s_w[0]) / s_out])
    return np.float64(s_in) * s_w.astype(np.float64) / s_out


def activation_range(
    activation: str, output_scale: float, output_zero_point: int
) -> tuple[int, int]:
    """``(act_min, act_max)`` clamp of a fused activation on the int8 output.

    Quantizes the real bounds 0 and 6 as TFLite does: ``z_out + round(f / s_out)`` with a
    float32 division. Raises ``ValueError`` for an unknown activation, or when
    ``6 / s_out`` does not fit int32 (TFLM fails Prepare there too).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")

    def quantize(real: float) -> int:
        steps = round_half_away(np.float32(real) / np.float32(output_scale))
        if not INT32_MIN <= steps <= INT32_MAX:
            raise ValueError(
                f"{activation}: bound {real} / output scale {output_scale} overflows int32; "
                "use a larger output scale"
            )
        return output_zero_point + int(steps)

    if activation == "none":
        return INT8_MIN, INT8_MAX
    act_min = max(INT8_MIN, quantize(0.0))
    if activation == "relu":
        return act_min, INT8_MAX
    return act_min, min(INT8_MAX, quantize(6.0))
