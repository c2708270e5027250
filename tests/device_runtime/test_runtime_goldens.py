"""Hand-checked goldens for the int8 FC numerics (the derivation is in each comment).

Notation: an effective scale ``real = M · 2^(shift − 31)``; double rounding computes
``h = floor((t·M + 2³⁰) / 2³¹)`` then divides by ``2^−shift`` with ties away from zero;
single rounding computes ``(acc·M + 2^(30 − shift)) >> (31 − shift)``.
"""

from __future__ import annotations

import numpy as np
import pytest

from fedlora.device_runtime import (
    FullyConnectedChain,
    FullyConnectedSpec,
    activation_range,
    effective_output_scale,
    fully_connected_int8,
    multiply_by_quantized_multiplier,
    prepare_fully_connected,
    quantize_multiplier,
)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def scalar_fc(x_values, weight_scale, *, rounding="double", bias=None, weight=1,
              output_zero_point=0, activation="none"):
    """One weight, unit input/output scales: output = requantize(weight·x + bias)."""
    x = np.asarray(x_values, dtype=np.int8).reshape(-1, 1)
    return fully_connected_int8(
        x, np.array([[weight]], dtype=np.int8), weight_scale,
        input_scale=1.0, input_zero_point=0, output_scale=1.0,
        output_zero_point=output_zero_point,
        bias=None if bias is None else np.array([bias], dtype=np.int32),
        activation=activation, rounding=rounding,
    ).ravel().tolist()


# --- QuantizeMultiplier -----------------------------------------------------------------


@pytest.mark.parametrize(
    "real, expected",
    [
        (0.0, (0, 0)),
        (0.25, (2**30, -1)),  # frexp(0.25) = (0.5, -1); 0.5·2³¹ = 2³⁰
        (0.5, (2**30, 0)),
        (1.0, (2**30, 1)),
        (0.75, (3 * 2**29, 0)),
        (2.0**-32, (2**30, -31)),  # the smallest shift that is kept
        (2.0**-33, (0, 0)),  # shift −32 < −31: flushed to zero
        (2.0**-40, (0, 0)),
        # q = 1 − 2⁻⁴⁰ rounds to M = 2³¹, renormalized to (2³⁰, shift + 1).
        (1.0 - 2.0**-40, (2**30, 1)),
        (0.5 - 2.0**-41, (2**30, 0)),
    ],
)
def test_quantize_multiplier_goldens(real, expected):
    for rounding in ("double", "single"):
        m, shift = quantize_multiplier(real, rounding)
        assert (int(m), int(shift)) == expected


def test_quantize_multiplier_single_rounding_clamps_large_shifts():
    # frexp(2³¹) = (0.5, 32): double keeps shift 32; single saturates to (2³¹ − 1, 30).
    assert tuple(map(int, quantize_multiplier(2.0**31, "double"))) == (2**30, 32)
    assert tuple(map(int, quantize_multiplier(2.0**31, "single"))) == (2**31 - 1, 30)


# --- MultiplyByQuantizedMultiplier ------------------------------------------------------


def test_saturating_high_mul_saturates_int32_min_squared():
    # t = M = INT32_MIN: t·M = 2⁶², whose doubled high half (2³¹) does not fit int32.
    # gemmlowp saturates it to INT32_MAX; shift 0 leaves it unchanged.
    out = multiply_by_quantized_multiplier(np.array([INT32_MIN]), INT32_MIN, 0, "double")
    assert out.tolist() == [INT32_MAX]
    # One step away it does not saturate: (INT32_MIN + 1)·INT32_MIN / 2³¹ = 2³¹ − 1.
    out = multiply_by_quantized_multiplier(np.array([INT32_MIN + 1]), INT32_MIN, 0, "double")
    assert out.tolist() == [INT32_MAX]
    out = multiply_by_quantized_multiplier(np.array([2]), INT32_MIN, 0, "double")
    assert out.tolist() == [-2]


def test_left_shift_wraps_in_int32():
    # shift 1: C computes x·2 in int32 first. 2³⁰·2 = 2³¹ wraps to INT32_MIN, and
    # INT32_MIN·2³⁰ / 2³¹ = −2³⁰.
    out = multiply_by_quantized_multiplier(np.array([2**30]), 2**30, 1, "double")
    assert out.tolist() == [-(2**30)]
    # Single rounding has no int32 step: 2³⁰·2³⁰ / 2³⁰ = 2³⁰.
    out = multiply_by_quantized_multiplier(np.array([2**30]), 2**30, 1, "single")
    assert out.tolist() == [2**30]


def test_double_rounding_rounds_twice_near_half():
    # real = 2⁻³² → (2³⁰, −31). acc = 2³¹ − 1: exact value 0.49999999977.
    # double: h = floor(((2³¹−1)·2³⁰ + 2³⁰) / 2³¹) = 2³⁰; 2³⁰ / 2³¹ is a tie → 1.
    # single: ((2³¹−1)·2³⁰ + 2⁶¹) >> 62 = (2⁶² − 2³⁰) >> 62 = 0.
    acc = np.array([INT32_MAX])
    assert multiply_by_quantized_multiplier(acc, 2**30, -31, "double").tolist() == [1]
    assert multiply_by_quantized_multiplier(acc, 2**30, -31, "single").tolist() == [0]


# --- The DESIGN probe: scale 0.25 exactly (M = 2³⁰, shift = −1) -------------------------

#   x   exact   double: h = floor((x+1)/2), then h/2 ties away   single: floor(x/4 + 1/2)
#   1   0.25    h=1 → 0.5 → 1                                    0
#   2   0.5     h=1 → 1                                          1
#   3   0.75    h=2 → 1                                          1
#   5   1.25    h=3 → 1.5 → 2                                    1
#   6   1.5     h=3 → 2                                          2
#  −1  −0.25    h=0 → 0                                          0
#  −2  −0.5     h=−1 → −0.5 → −1 (away from zero)                0 (ties toward +∞)
#  −5  −1.25    h=−2 → −1                                        −1
#  −6  −1.5     h=−3 → −1.5 → −2                                 −1
QUARTER_X = [1, 2, 3, 5, 6, -1, -2, -5, -6]
QUARTER_DOUBLE = [1, 1, 1, 2, 2, 0, -1, -1, -2]
QUARTER_SINGLE = [0, 1, 1, 1, 2, 0, 0, -1, -1]


def test_scale_quarter_double_rounding():
    assert scalar_fc(QUARTER_X, 0.25, rounding="double") == QUARTER_DOUBLE


def test_scale_quarter_single_rounding():
    assert scalar_fc(QUARTER_X, 0.25, rounding="single") == QUARTER_SINGLE


# --- Saturation, offsets and the wrapping accumulator -----------------------------------


def test_output_saturates_at_int8_bounds():
    # acc = 127·127·4 = 64516 at scale 1 → far above 127; the negative side → −128.
    x = np.full((2, 4), 127, dtype=np.int8)
    x[1] = -128
    y = fully_connected_int8(
        x, np.full((1, 4), 127, dtype=np.int8), 1.0, input_scale=1.0, input_zero_point=0,
        output_scale=1.0, output_zero_point=0,
    )
    assert y.ravel().tolist() == [127, -128]
    # An output zero point pushes a small value over the top: 30 + 100 → 127.
    assert scalar_fc([30], 1.0, output_zero_point=100) == [127]
    assert scalar_fc([-30], 1.0, output_zero_point=-100) == [-128]


def test_input_offset_is_subtracted():
    # x = 10, z_in = 4: acc = 2·(10 − 4) = 12 at scale 1.
    y = fully_connected_int8(
        np.array([[10]], dtype=np.int8), np.array([[2]], dtype=np.int8), 1.0,
        input_scale=1.0, input_zero_point=4, output_scale=1.0, output_zero_point=0,
    )
    assert y.tolist() == [[12]]


def test_bias_overflow_wraps_like_the_c_accumulator():
    # real = 2⁻²⁴ → (2³⁰, −23). bias = INT32_MAX:
    #   x = 0: acc = 2³¹ − 1 → h = 2³⁰ → 2³⁰ / 2²³ = 128 → clamp 127.
    #   x = 1: acc = INT32_MAX + 1 wraps to INT32_MIN → h = −2³⁰ → −128.
    assert scalar_fc([0, 1], 2.0**-24, bias=INT32_MAX) == [127, -128]
    # bias = INT32_MIN, x = −1: acc wraps to INT32_MAX → 127; x = 0 stays at −128.
    assert scalar_fc([-1, 0], 2.0**-24, bias=INT32_MIN) == [127, -128]
    # Exactly at the edge, no wrap: INT32_MAX − 1 + 1 = INT32_MAX → 127.
    assert scalar_fc([1], 2.0**-24, bias=INT32_MAX - 1) == [127]


def test_tiny_scale_flushes_to_zero_point():
    # real = 2⁻⁴⁰ < 2⁻³²: the multiplier is 0, every output is the zero point.
    assert scalar_fc([127, -128, 0], 2.0**-40, bias=INT32_MAX, output_zero_point=-7) == [-7] * 3


def test_multiplier_rounded_to_two_pow_31_per_channel():
    # Per channel, the scale product is a double: (1 + 2⁻²³)·(1 − 2⁻²³) = 1 − 2⁻⁴⁶.
    # frexp → q = 1 − 2⁻⁴⁶; q·2³¹ rounds to 2³¹ → (2³⁰, 1). acc = 100: t = 200,
    # h = floor((200·2³⁰ + 2³⁰)/2³¹) = floor(100.5) = 100.
    # Channel 1: real = (1 + 2⁻²³)·0.25 → M = 2³⁰ + 2⁷, shift −1:
    # h = floor((100·(2³⁰ + 2⁷) + 2³⁰)/2³¹) = 50; 50/2 = 25.
    s_in = float(np.float32(1 + 2.0**-23))
    spec = FullyConnectedSpec(
        weights=np.array([[1], [1]], dtype=np.int8),
        weight_scale=np.array([1 - 2.0**-23, 0.25], dtype=np.float32),
        input_scale=s_in, input_zero_point=0, output_scale=1.0, output_zero_point=0,
    )
    prepared = prepare_fully_connected(spec)
    assert prepared.output_multiplier.tolist() == [2**30, 2**30 + 2**7]
    assert prepared.output_shift.tolist() == [1, -1]
    chain = FullyConnectedChain([spec])
    assert chain(np.array([[100]], dtype=np.int8)).tolist() == [[100, 25]]


def test_per_tensor_product_is_float32_per_channel_is_double():
    # float32(1 − 2⁻⁴⁶) = 1.0 exactly, but in double the product keeps its 2⁻⁴⁶.
    s_in = float(np.float32(1 + 2.0**-23))
    w = np.float32(1 - 2.0**-23)
    per_tensor = effective_output_scale(s_in, np.array([w]), 1.0)
    per_channel = effective_output_scale(s_in, np.array([w, w]), 1.0)
    assert per_tensor.tolist() == [1.0]
    assert per_channel.tolist() == [1 - 2.0**-46] * 2


def test_per_channel_scales():
    # acc = 2·3 = 6 with scales 0.5, 0.25, 0.125 (all M = 2³⁰):
    #   0.5:  h = floor(7·2³⁰/2³¹) = 3                         → 3
    #   0.25: h = 3, 3/2 = 1.5 → 2                             → 2
    #   0.125: h = 3, 3/4 = 0.75 → remainder 3 > threshold 1   → 1
    y = fully_connected_int8(
        np.array([[3]], dtype=np.int8), np.array([[2], [2], [2]], dtype=np.int8),
        np.array([0.5, 0.25, 0.125], dtype=np.float32),
        input_scale=1.0, input_zero_point=0, output_scale=1.0, output_zero_point=0,
    )
    assert y.tolist() == [[3, 2, 1]]


# --- Fused activations --------------------------------------------------------------------


def test_activation_ranges():
    assert activation_range("none", 0.5, -10) == (-128, 127)
    assert activation_range("relu", 0.5, -10) == (-10, 127)
    # RELU6: upper bound z_out + round(6 / 0.5) = −10 + 12 = 2.
    assert activation_range("relu6", 0.5, -10) == (-10, 2)
    # 6 / 12 = 0.5 is a tie, rounded away from zero: z_out + 1.
    assert activation_range("relu6", 12.0, -5) == (-5, -4)
    # Bounds are clamped to int8: 120 + 600 → 127; z_out below −128 cannot happen.
    assert activation_range("relu6", 0.01, 120) == (120, 127)


def test_relu_and_relu6_clamp_outputs():
    # scale 1, z_out = −10: RELU clamps below at −10; RELU6 also above at −10 + 6 = −4.
    x = [-50, -3, 0, 3, 50]
    assert scalar_fc(x, 1.0, output_zero_point=-10, activation="none") == [-60, -13, -10, -7, 40]
    assert scalar_fc(x, 1.0, output_zero_point=-10, activation="relu") == [-10, -10, -10, -7, 40]
    assert scalar_fc(x, 1.0, output_zero_point=-10, activation="relu6") == [-10, -10, -10, -7, -4]
