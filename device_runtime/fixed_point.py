"""Fixed-point rescaling of int32 accumulators, bit-exact to the TFLM / CMSIS-NN C kernels.

An int8 kernel multiplies its int32 accumulator by a real factor (the *effective scale*,
typically in (0, 1)) without floating point: the factor is stored as a Q0.31 multiplier
``M`` and a power-of-two ``shift`` (``real ≈ M · 2^(shift − 31)``), and the product is
formed in 64-bit integers. This module implements that arithmetic for numpy arrays.

Numerics (TFLM ``quantization_util.cc`` / ``common.cc``, gemmlowp ``fixedpoint.h``,
CMSIS-NN ``arm_nn_requantize``):

* ``QuantizeMultiplier(real)``: ``real == 0 → (0, 0)``. Otherwise ``q, shift = frexp(real)``
  (``q`` in [0.5, 1)), ``M = round_half_away(q · 2³¹)``; ``M == 2³¹`` (``q`` rounded up to
  1) becomes ``M = 2³⁰, shift + 1``; ``shift < −31`` flushes to ``(0, 0)`` (the result
  would be 0 anyway). Single-rounding builds also clamp ``shift > 30`` to
  ``(2³¹ − 1, 30)`` because their 64-bit shift would otherwise be out of range.
* Double rounding (the default of TFLM and CMSIS-NN):
  ``t = acc · 2^max(shift, 0)`` as an int32 multiply (wraps on overflow, like the C);
  ``h = SaturatingRoundingDoublingHighMul(t, M) = floor((t·M + 2³⁰) / 2³¹)``, saturating
  to ``INT32_MAX`` only for ``t == M == INT32_MIN``;
  ``RoundingDivideByPOT(h, e)`` with ``e = max(−shift, 0)`` divides by ``2^e`` rounding
  ties away from zero: ``(h >> e) + ((h & mask) > (mask >> 1) + (h < 0))``.
  Rounding happens twice, hence the name.
* Single rounding (``TFLITE_SINGLE_ROUNDING`` / ``CMSIS_NN_USE_SINGLE_ROUNDING``):
  ``(acc · M + 2^(30 − shift)) >> (31 − shift)`` in int64, truncated to int32.

The two modes differ by ±1 on a small fraction of accumulators. Everything here is exact
integer arithmetic in int64: ``|t·M| ≤ 2⁶²`` so no intermediate overflows.

For speed, :func:`fused_requantization` rewrites either mode as one rounding shift,
``(acc·M + C − [acc < 0]·N) >> S`` with per-channel constants; the derivation is next to
it. It is exact whenever the C's int32 left shift cannot wrap.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Rounding = Literal["double", "single"]
ROUNDING_MODES: tuple[str, ...] = ("double", "single")

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def check_rounding(rounding: str) -> None:
    """Raise ``ValueError`` unless ``rounding`` names a supported mode."""
    if rounding not in ROUNDING_MODES:
        raise ValueError(
            f"rounding must be one of {ROUNDING_MODES} (the C build flag "
            f"TFLITE_SINGLE_ROUNDING selects 'single'), got {rounding!r}"
        )


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round to nearest, ties away from zero, without the ``floor(x + 0.5)`` pitfalls.

    ``x − trunc(x)`` is exact in binary floating point, so comparing the fractional part
    with 0.5 reproduces C ``round``/``roundf`` for every input of ``x``'s float dtype.
    """
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    whole = np.trunc(x)
    away = (np.abs(x - whole) >= 0.5).astype(x.dtype)
    return whole + np.copysign(away, x)


def wrap_int32(x: np.ndarray) -> np.ndarray:
    """Reduce int64 values modulo 2³² into [−2³¹, 2³¹): what a C int32 does on overflow."""
    x = np.asarray(x, dtype=np.int64)
    return ((x + 2**31) & 0xFFFFFFFF) - 2**31


def quantize_multiplier(
    real: float | np.ndarray, rounding: Rounding = "double"
) -> tuple[np.ndarray, np.ndarray]:
    """TFLM ``QuantizeMultiplier``: ``real ≈ M · 2^(shift − 31)``.

    real: finite float64 scalar or array (effective scales are > 0; 0 maps to (0, 0)).
    Returns ``(M, shift)`` as int32 arrays of ``real``'s shape, with ``M`` in
    [2³⁰, 2³¹ − 1] (or 0) and ``shift`` in [−31, ...] (≤ 30 when ``rounding="single"``).
    """
    check_rounding(rounding)
    real = np.asarray(real, dtype=np.float64)
    if not np.all(np.isfinite(real)):
        raise ValueError(f"cannot quantize a non-finite multiplier: {real}")
    q, exponent = np.frexp(real)
    # q·2³¹ is an exact float64 (a power-of-two scaling); rounding it is exact too.
    m = round_half_away(q * 2.0**31).astype(np.int64)
    shift = exponent.astype(np.int64)
    carry = m == 2**31  # q rounded up to 1.0: renormalize
    m = np.where(carry, m // 2, m)
    shift = np.where(carry, shift + 1, shift)
    # Shifting right by more than 31 would lose every bit: flush to zero instead.
    flush = shift < -31
    m = np.where(flush, 0, m)
    shift = np.where(flush, 0, shift)
    if rounding == "single":
        # The single-rounding kernel shifts an int64 by 31 − shift ≥ 1: saturate.
        big = shift > 30
        m = np.where(big, INT32_MAX, m)
        shift = np.where(big, 30, shift)
    return m.astype(np.int32), shift.astype(np.int32)


def multiply_by_quantized_multiplier(
    acc: np.ndarray,
    multiplier: int | np.ndarray,
    shift: int | np.ndarray,
    rounding: Rounding = "double",
) -> np.ndarray:
    """TFLM ``MultiplyByQuantizedMultiplier`` over numpy arrays, bit for bit.

    acc: int32 values (any integer dtype). multiplier: int32 values (``quantize_multiplier``
    gives them in [0, 2³¹)); shift: in [−31, 30]. Both broadcast against ``acc`` (e.g. a
    per-channel ``(out,)`` vector against ``(batch, out)`` accumulators).
    Returns int32 of the broadcast shape. Out-of-range results wrap as the C's int32 does.
    """
    check_rounding(rounding)
    acc = np.asarray(acc)
    multiplier = np.asarray(multiplier, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if acc.dtype.kind not in "iu":
        raise TypeError(f"acc must be an integer array, got dtype {acc.dtype}")
    if acc.size and (acc.min() < INT32_MIN or acc.max() > INT32_MAX):
        raise ValueError("acc must hold int32 values")
    if multiplier.size and (multiplier.min() < INT32_MIN or multiplier.max() > INT32_MAX):
        raise ValueError("multiplier must hold int32 values")
    if shift.size and (shift.min() < -31 or shift.max() > 30):
        raise ValueError(
            f"shift must lie in [-31, 30] (what quantize_multiplier produces), got "
            f"[{shift.min()}, {shift.max()}]"
        )
    acc = acc.astype(np.int64)
    if rounding == "double":
        out = requantize_double(acc, multiplier, shift)
    else:
        out = requantize_single(acc, multiplier, shift)
    return out.astype(np.int32)


# The two kernels below are the interior of the runtime: arguments are int64 arrays that
# the caller has validated (acc in int32 range, shift in [-31, 30]).


def requantize_double(acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Double rounding: ``RoundingDivideByPOT(SRDHM(acc · 2^left, M), right)``; int64 out."""
    if np.any(shift > 0):
        left = np.maximum(shift, 0)
        # C computes `x * (1 << left)` in int32: keep the low 32 bits, sign-extended.
        acc = wrap_int32(acc << left)
    # SaturatingRoundingDoublingHighMul. gemmlowp writes it as
    # (ab + (ab >= 0 ? 2^30 : 1 - 2^30)) / 2^31 with C's truncating division, which
    # equals floor((ab + 2^30) / 2^31) for every int64 ab: an arithmetic shift.
    high = (acc * multiplier + (1 << 30)) >> 31
    # The single overflowing case, INT32_MIN · INT32_MIN, saturates to INT32_MAX.
    if np.any(multiplier == INT32_MIN):
        high = np.where((acc == INT32_MIN) & (multiplier == INT32_MIN), INT32_MAX, high)
    # RoundingDivideByPOT: divide by 2^right, ties away from zero.
    right = np.maximum(-shift, 0)
    mask = (np.int64(1) << right) - 1
    remainder = high & mask
    threshold = (mask >> 1) + (high < 0)
    return (high >> right) + (remainder > threshold)


def requantize_single(acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Single rounding: ``(acc · M + 2^(30 − shift)) >> (31 − shift)``, wrapped to int32."""
    total_shift = 31 - shift  # in [1, 62]
    rounded = (acc * multiplier + (np.int64(1) << (total_shift - 1))) >> total_shift
    return wrap_int32(rounded)


def fused_requantization(
    multiplier: np.ndarray, shift: np.ndarray, rounding: Rounding
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Constants ``(C, N, S)`` (int64, shaped like ``shift``) of the one-shift form

        MultiplyByQuantizedMultiplier(acc, M, shift) == (acc·M + C − [acc < 0]·N) >> S

    valid for ``M`` from :func:`quantize_multiplier` (0 with shift 0, or in [2³⁰, 2³¹)) and,
    for double rounding with ``shift = L > 0``, accumulators with ``|acc·2^L| < 2³¹`` (the
    C's int32 left shift does not wrap). Five numpy passes instead of about twelve.

    Derivation, with ``T = acc·M``:

    * single rounding: the definition, ``C = 2^(30 − shift)``, ``S = 31 − shift``, ``N = 0``.
    * double, ``shift = L > 0``: ``⌊(T·2^L + 2³⁰)/2³¹⌋ = ⌊(T + 2^(30−L))/2^(31−L)⌋``, the
      right shift is 0: ``C = 2^(30 − L)``, ``S = 31 − L``, ``N = 0``.
    * double, ``shift = −e ≤ 0``: ``h = ⌊(T + 2³⁰)/2³¹⌋`` and, for ``e ≥ 1``,
      ``RoundingDivideByPOT(h, e) = ⌊(h + 2^(e−1) − [h < 0]) / 2^e⌋`` (ties away from zero).
      Nested floors of integers merge, ``⌊(⌊A/2³¹⌋ + c)/2^e⌋ = ⌊(A + c·2³¹)/2^(31+e)⌋``, so
      ``r = (T + 2³⁰ + 2^(30+e) − [h < 0]·2³¹) >> (31 + e)``: ``C = 2³⁰ + 2^(30+e)``,
      ``N = 2³¹``, ``S = 31 + e``; for ``e = 0``, ``C = 2³⁰``, ``N = 0``, ``S = 31``.
      ``h < 0 ⟺ T < −2³⁰ ⟺ acc < 0`` for ``M ≥ 2³⁰``, except ``acc = −1, M = 2³⁰``, where
      both choices give 0; ``M = 0`` comes with ``e = 0``, hence ``N = 0``.

    All terms stay below 2⁶³: ``|T| < 2⁶²`` and ``C ≤ 2³⁰ + 2⁶¹``.
    """
    check_rounding(rounding)
    shift = np.asarray(shift, dtype=np.int64)
    multiplier = np.asarray(multiplier, dtype=np.int64)
    normalized = (multiplier >= 2**30) | ((multiplier == 0) & (shift == 0))
    if not np.all(normalized):
        raise ValueError("fused requantization needs multipliers from quantize_multiplier")
    one = np.int64(1)
    zero = np.zeros_like(shift)
    if rounding == "single":
        return one << (30 - shift), zero, 31 - shift
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    add = np.where(
        shift > 0,
        one << (30 - left),
        (one << 30) + np.where(right > 0, one << (30 + right), 0),
    )
    negative = np.where(right > 0, one << 31, zero)
    total_shift = np.where(shift > 0, 31 - left, 31 + right)
    return add.astype(np.int64), negative.astype(np.int64), total_shift.astype(np.int64)
