"""An independent, slow statement of the TFLM int8 FULLY_CONNECTED contract.

Pure Python integers and floats, written the way the C is written (gemmlowp's
truncating division and nudge, loops over batch, channel and depth, an int32 accumulator
that wraps at every step). It shares no code with ``fedlora.device_runtime``, so the
property tests compare two implementations, not one with itself.
"""

from __future__ import annotations

import math
import struct

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def f32(x: float) -> float:
    """Round a Python float (double) to the nearest float32, as a C ``(float)`` cast."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def c_round(x: float) -> int:
    """C ``round``: nearest integer, ties away from zero (exact for any double)."""
    whole = math.trunc(x)
    frac = x - whole  # exact
    if frac >= 0.5:
        return whole + 1
    if frac <= -0.5:
        return whole - 1
    return whole


def wrap32(v: int) -> int:
    return (v + 2**31) % 2**32 - 2**31


def quantize_multiplier(real: float, single: bool) -> tuple[int, int]:
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = c_round(q * (1 << 31))
    assert q_fixed <= 1 << 31
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    if single and shift > 30:
        shift, q_fixed = 30, (1 << 31) - 1
    return q_fixed, shift


def _c_div(n: int, d: int) -> int:
    """C integer division: truncates toward zero."""
    q = abs(n) // abs(d)
    return q if (n >= 0) == (d > 0) else -q


def saturating_rounding_doubling_high_mul(a: int, b: int) -> int:
    overflow = a == b == INT32_MIN
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    high = _c_div(ab + nudge, 1 << 31)
    return INT32_MAX if overflow else high


def rounding_divide_by_pot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    remainder = x & mask  # Python's & on negatives is two's complement, like int32
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def multiply_by_quantized_multiplier(x: int, multiplier: int, shift: int, single: bool) -> int:
    if single:
        total_shift = 31 - shift
        return wrap32((x * multiplier + (1 << (total_shift - 1))) >> total_shift)
    left_shift = shift if shift > 0 else 0
    right_shift = 0 if shift > 0 else -shift
    shifted = wrap32(x * (1 << left_shift))
    return rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(shifted, multiplier), right_shift
    )


def effective_scales(input_scale: float, weight_scales: list[float], output_scale: float):
    """One float per output channel; a single weight scale means per-tensor semantics."""
    s_in, s_out = f32(input_scale), f32(output_scale)
    if len(weight_scales) == 1:
        return [f32(s_in * f32(weight_scales[0])) / s_out]  # float32 product
    return [s_in * f32(s) / s_out for s in weight_scales]


def activation_range(activation: str, output_scale: float, zero_point: int) -> tuple[int, int]:
    def quantize(f: float) -> int:
        return zero_point + c_round(f32(f / f32(output_scale)))

    if activation == "none":
        return -128, 127
    if activation == "relu":
        return max(-128, quantize(0.0)), 127
    return max(-128, quantize(0.0)), min(127, quantize(6.0))


def fully_connected(
    x, weights, bias, *, input_scale, input_zero_point, weight_scales, output_scale,
    output_zero_point, activation, single,
):
    """x: list of batch rows of ints; weights: list of out rows; bias: list or None."""
    out_depth, depth = len(weights), len(weights[0])
    reals = effective_scales(input_scale, list(weight_scales), output_scale)
    if len(reals) == 1:
        reals = reals * out_depth
    quantized = [quantize_multiplier(r, single) for r in reals]
    act_min, act_max = activation_range(activation, output_scale, output_zero_point)
    input_offset, output_offset = -input_zero_point, output_zero_point
    result = []
    for row in x:
        out_row = []
        for out_c in range(out_depth):
            acc = 0
            for d in range(depth):
                acc = wrap32(acc + int(weights[out_c][d]) * (int(row[d]) + input_offset))
            if bias is not None:
                acc = wrap32(acc + int(bias[out_c]))
            multiplier, shift = quantized[out_c]
            acc = multiply_by_quantized_multiplier(acc, multiplier, shift, single)
            acc = wrap32(acc + output_offset)
            out_row.append(min(max(acc, act_min), act_max))
        result.append(out_row)
    return result
