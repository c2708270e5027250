"""Scales and zero points as TFLite computes them, and C rounding (hand-checked)."""

from __future__ import annotations

import numpy as np
import pytest

from fedlora.device_runtime import (
    FactorizedLinear,
    asymmetric_params_from_range,
    dequantize_activation,
    quantize_activation,
    quantize_bias,
)
from fedlora.device_runtime.quantization import round_half_away


def test_round_half_away_matches_c_round_at_the_edges():
    # The largest float32 below 0.5: floor(x + 0.5) would give 1 (x + 0.5 rounds to 1.0).
    below_half = np.nextafter(np.float32(0.5), np.float32(0))
    assert round_half_away(np.array([below_half, -below_half])).tolist() == [0.0, -0.0]
    # 2²³ + 1 in float32: x + 0.5 is a tie that rounds to even (2²³ + 2).
    big = np.array([2.0**23 + 1], dtype=np.float32)
    assert round_half_away(big).tolist() == [2.0**23 + 1]
    assert round_half_away(np.array([0.5, 1.5, 2.5, -0.5, -2.5])).tolist() == [1, 2, 3, -1, -3]
    assert round_half_away(np.float32(2.4999998)).dtype == np.float32


@pytest.mark.parametrize(
    "lo, hi, zero_point",
    [
        (0.0, 2.55, -128),  # min is 0: zero point at the bottom
        (1.0, 2.0, -128),  # range widened down to include 0
        (-2.55, 0.0, 127),  # max is 0: zero point at the top
        (-3.0, -1.0, 127),  # range widened up to include 0
        (-1.0, 3.0, -64),  # −128 + 1/(4/255) = −128 + 63.75 = −64.25 → −64
        (-3.0, 1.0, 63),  # −128 + 3/(4/255) = −128 + 191.25 = 63.25 → 63
    ],
)
def test_asymmetric_params_from_range(lo, hi, zero_point):
    scale, zp = asymmetric_params_from_range(lo, hi)
    width = np.float32(max(hi, 0.0)) - np.float32(min(lo, 0.0))
    assert scale == float(width / np.float32(255))
    assert zp == zero_point


def test_asymmetric_params_represent_zero_exactly():
    scale, zp = asymmetric_params_from_range(-0.37, 1.91)
    assert dequantize_activation(np.array([zp], dtype=np.int8), scale, zp).tolist() == [0.0]


def test_asymmetric_params_reject_degenerate_ranges():
    with pytest.raises(ValueError, match=r"\[0, 0\]"):
        asymmetric_params_from_range(0.0, 0.0)
    with pytest.raises(ValueError, match="finite"):
        asymmetric_params_from_range(0.0, float("inf"))


def test_quantize_activation_rounds_half_away_and_saturates():
    # scale 0.5, zp 3: x/0.5 = −1.5 → −2 → 1; 0.25/0.5 = 0.5 → 1 → 4; 1000 → 127.
    q = quantize_activation(np.array([-0.75, 0.25, 1000.0, -1000.0]), 0.5, 3)
    assert q.dtype == np.int8
    assert q.tolist() == [1, 4, 127, -128]


def test_quantize_bias():
    # scale = 0.5·0.25 = 0.125: 1.0 → 8, −0.0625 → −0.5 → −1 (ties away from zero).
    q = quantize_bias(np.array([1.0, -0.0625]), 0.5, np.array([0.25]))
    assert q.dtype == np.int32 and q.tolist() == [8, -1]
    # Per channel, and saturation to ±(2³¹ − 1) (not INT32_MIN, as TFLite).
    q = quantize_bias(np.array([1e10, -1e10]), 1.0, np.array([1.0, 1.0]))
    assert q.tolist() == [2**31 - 1, -(2**31 - 1)]


def test_factorized_layer_approximates_its_float_layer():
    rng = np.random.default_rng(0)
    u = rng.normal(size=(24, 6)).astype(np.float32)
    v = rng.normal(size=(6, 40)).astype(np.float32) / 6
    bias = rng.normal(size=24).astype(np.float32)
    x = rng.normal(size=(256, 40)).astype(np.float32)
    layer = FactorizedLinear.from_float(u, v, bias, x)
    assert (layer.in_features, layer.rank, layer.out_features) == (40, 6, 24)
    assert layer.first.per_channel and layer.second.per_channel
    y = layer.forward_float(x)
    y_float = x @ v.T @ u.T + bias
    # int8 everywhere: error of a few output steps, not more.
    assert np.abs(y - y_float).max() < 6 * layer.second.output_scale
