"""int8 FULLY_CONNECTED, bit-exact to TFLM's reference kernel and CMSIS-NN.

The contract (``reference/integer_ops/fully_connected.h``), for input ``x`` (batch, depth)
int8 with zero point ``z_in``, weights ``w`` (out, depth) int8 symmetric, optional int32
``bias`` (out,), output zero point ``z_out``:

    acc[b, o] = Σ_d w[o, d] · (x[b, d] + input_offset) + bias[o]      int32, input_offset = −z_in
    y[b, o]   = clamp(MultiplyByQuantizedMultiplier(acc, M[o], shift[o]) + output_offset,
                      act_min, act_max)                                output_offset = z_out

with ``(M, shift)`` from the effective scale (see :mod:`.quantization`). Like TFLM, the
work is split in two: :func:`prepare_fully_connected` validates a
:class:`FullyConnectedSpec` once and precomputes everything that does not depend on the
input (a :class:`PreparedFullyConnected`); :func:`eval_fully_connected` only computes.

How the accumulator is computed exactly, fast: numpy has no fast integer GEMM, but float
BLAS is exact on integers as long as every partial sum is exactly representable. We fold
the input offset out of the inner product, ``Σ w·(x − z_in) = Σ w·x − z_in·Σ w``, so the
products are raw int8·int8 with ``|w·x| ≤ 128·128 = 2¹⁴``; a block of up to 1024 terms
keeps every partial sum within ``2²⁴``, where float32 represents every integer, so a
float32 GEMM per block is exact in any summation order (FMA included). Blocks are summed
in float64 (exact below 2⁵³) and ``bias − z_in·Σ_d w`` is added per channel (precomputed).

The C kernel's int32 arithmetic wraps on overflow. Prepare bounds ``|acc|`` over all int8
inputs; when no int32 step can wrap (the usual case) Eval uses the fused one-shift
requantization of :func:`.fixed_point.fused_requantization`, otherwise the step-by-step
kernels with explicit wrapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .fixed_point import (
    INT32_MAX,
    INT32_MIN,
    Rounding,
    check_rounding,
    fused_requantization,
    quantize_multiplier,
    requantize_double,
    requantize_single,
    wrap_int32,
)
from .quantization import INT8_MAX, INT8_MIN, activation_range, effective_output_scale

# Largest depth block whose float32 partial sums stay exact: 1024 · 2¹⁴ = 2²⁴.
FLOAT32_EXACT_DEPTH = 1024


@dataclass(frozen=True, eq=False)
class FullyConnectedSpec:
    """An int8 FULLY_CONNECTED op as stored in a model: tensors and quantization params.

    weights: (out, depth) int8, symmetric (zero point 0).
    weight_scale: (1,) per-tensor or (out,) per-output-channel float32 scales, > 0.
    input_scale, input_zero_point: int8 input quantization (scale > 0, zp in [−128, 127]).
    output_scale, output_zero_point: int8 output quantization.
    bias: optional (out,) int32 with scale ``input_scale · weight_scale``, zero point 0.
    activation: fused clamp, "none" | "relu" | "relu6".

    Nothing is checked here: :func:`prepare_fully_connected` validates.
    """

    weights: np.ndarray
    weight_scale: np.ndarray
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    bias: np.ndarray | None = None
    activation: str = "none"

    @property
    def per_channel(self) -> bool:
        """True when each output channel has its own weight scale (TFLM: > 1 scale)."""
        return np.size(self.weight_scale) > 1


@dataclass(frozen=True, eq=False)
class _Accelerator:
    """Host-side precomputation for Eval; derived from the kernel parameters only."""

    weights_t: np.ndarray  # (depth, out) float32 copy of the weights
    fused: bool  # no int32 step can wrap: int32 accumulation and the one-shift form
    acc_offset: np.ndarray  # (out,) bias + input_offset·Σ_d w: int32 when fused, else int64
    multiplier: np.ndarray  # (out,) int64
    add: np.ndarray  # (out,) int64: C of the fused form (+ z_out·2^S when folded)
    negative: np.ndarray | None  # (out,) int64 N of the fused form, None when all 0
    total_shift: np.ndarray  # (out,) int64
    zero_point_after: int  # z_out still to add after the shift (0 when folded into add)


@dataclass(frozen=True, eq=False)
class PreparedFullyConnected:
    """A validated FC with its kernel parameters (TFLM's ``OpDataFullyConnected``).

    The public fields are exactly what a C kernel needs (and what :mod:`.export_c` writes).
    """

    spec: FullyConnectedSpec
    rounding: Rounding
    accum_depth: int  # input features
    output_depth: int  # output features
    input_offset: int  # −input zero point
    output_offset: int  # output zero point
    output_multiplier: np.ndarray  # (out,) int32, per-tensor values broadcast
    output_shift: np.ndarray  # (out,) int32, in [−31, 30]
    output_activation_min: int
    output_activation_max: int
    bias: np.ndarray  # (out,) int32, zeros when the spec has none
    _fast: _Accelerator = field(repr=False)


def prepare_fully_connected(
    spec: FullyConnectedSpec, rounding: Rounding = "double"
) -> PreparedFullyConnected:
    """Validate ``spec`` and precompute multipliers, shifts, clamps and accumulator offsets.

    Raises ``ValueError`` (or ``TypeError`` for wrong dtypes) naming the offending value.
    """
    check_rounding(rounding)
    weights = _check_weights(spec.weights)
    out_depth, depth = weights.shape
    weight_scale = _check_scales("weight_scale", spec.weight_scale)
    if weight_scale.size not in (1, out_depth):
        raise ValueError(
            f"weight_scale must have 1 (per-tensor) or {out_depth} (per-channel) entries for "
            f"weights of shape {weights.shape}, got {weight_scale.size}"
        )
    input_scale = float(_check_scales("input_scale", spec.input_scale)[0])
    output_scale = float(_check_scales("output_scale", spec.output_scale)[0])
    z_in = _check_zero_point("input_zero_point", spec.input_zero_point)
    z_out = _check_zero_point("output_zero_point", spec.output_zero_point)
    bias = _check_bias(spec.bias, out_depth)
    act_min, act_max = activation_range(spec.activation, output_scale, z_out)

    real = effective_output_scale(input_scale, weight_scale, output_scale)
    multiplier, shift = quantize_multiplier(real, rounding)
    if rounding == "double" and shift.max() > 30:
        raise ValueError(
            f"effective scale s_in*s_w/s_out = {real.max():.6g} is >= 2^30; the double-rounding "
            "kernel would left-shift by 31 or more (undefined in C). Check the scales."
        )
    multiplier = np.broadcast_to(multiplier, (out_depth,)).astype(np.int32)
    shift = np.broadcast_to(shift, (out_depth,)).astype(np.int32)

    return PreparedFullyConnected(
        spec=spec,
        rounding=rounding,
        accum_depth=depth,
        output_depth=out_depth,
        input_offset=-z_in,
        output_offset=z_out,
        output_multiplier=multiplier,
        output_shift=shift,
        output_activation_min=act_min,
        output_activation_max=act_max,
        bias=bias,
        _fast=_accelerate(weights, bias, z_in, z_out, multiplier, shift, real, rounding),
    )


def eval_fully_connected(prepared: PreparedFullyConnected, x: np.ndarray) -> np.ndarray:
    """Run a prepared FC: ``x`` (batch, depth) int8 → (batch, out) int8."""
    check_input(prepared, x)
    return eval_float32(prepared, x.astype(np.float32)).astype(np.int8)


def fully_connected_int8(
    x: np.ndarray,
    weights: np.ndarray,
    weight_scale: np.ndarray | float,
    *,
    input_scale: float,
    input_zero_point: int,
    output_scale: float,
    output_zero_point: int,
    bias: np.ndarray | None = None,
    activation: str = "none",
    rounding: Rounding = "double",
) -> np.ndarray:
    """One-shot int8 FC (prepare, then eval): ``x`` (batch, depth) int8 → (batch, out) int8.

    ``weight_scale`` is a scalar / (1,) for per-tensor or (out,) for per-channel weights.
    Prefer :func:`prepare_fully_connected` + :func:`eval_fully_connected` when the same
    layer runs more than once.
    """
    spec = FullyConnectedSpec(
        weights=weights,
        weight_scale=np.atleast_1d(np.asarray(weight_scale, dtype=np.float32)),
        input_scale=input_scale,
        input_zero_point=input_zero_point,
        output_scale=output_scale,
        output_zero_point=output_zero_point,
        bias=bias,
        activation=activation,
    )
    return eval_fully_connected(prepare_fully_connected(spec, rounding), x)


def check_input(prepared: PreparedFullyConnected, x: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``x`` is int8 of shape (batch, accum_depth)."""
    if (
        not isinstance(x, np.ndarray)
        or x.dtype != np.int8
        or x.ndim != 2
        or x.shape[1] != prepared.accum_depth
    ):
        raise ValueError(
            f"input must be an int8 array of shape (batch, {prepared.accum_depth}), got "
            f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}"
        )


def eval_float32(prepared: PreparedFullyConnected, x: np.ndarray) -> np.ndarray:
    """Eval on int8 values held in float32 (batch, depth); returns int64 (batch, out).

    The interior of the runtime: a chain keeps activations in this form between layers,
    which saves converting to int8 and back. Output values are the int8 outputs.
    """
    fast = prepared._fast
    acc = _accumulate(fast, x, prepared.accum_depth)  # (batch, out) int64, exact
    if fast.fused:
        sign = None
        if fast.negative is not None:
            sign = acc >> 63  # −1 where acc < 0
            sign &= fast.negative
        acc *= fast.multiplier
        acc += fast.add
        if sign is not None:
            acc -= sign
        acc >>= fast.total_shift
        if fast.zero_point_after:
            acc += fast.zero_point_after
    else:
        acc = _requantize_wrapping(prepared, acc)
    np.clip(acc, prepared.output_activation_min, prepared.output_activation_max, out=acc)
    return acc


def _accumulate(fast: _Accelerator, x: np.ndarray, depth: int) -> np.ndarray:
    """Exact ``Σ_d w[o, d]·(x[b, d] + input_offset) + bias[o]`` as int64 (batch, out)."""
    if depth <= FLOAT32_EXACT_DEPTH:
        products = x @ fast.weights_t  # float32, exact
    else:
        products = np.zeros((x.shape[0], fast.weights_t.shape[1]), dtype=np.float64)
        for start in range(0, depth, FLOAT32_EXACT_DEPTH):
            block = slice(start, start + FLOAT32_EXACT_DEPTH)
            products += x[:, block] @ fast.weights_t[block]
    if fast.fused:
        # Prepare bounded |Σ w·x|, |offset| and their sum below 2³¹: int32 is exact (and
        # twice as fast as int64 on these passes).
        acc32 = products.astype(np.int32)
        acc32 += fast.acc_offset
        return acc32.astype(np.int64)
    acc = products.astype(np.int64)
    acc += fast.acc_offset
    return acc


def _requantize_wrapping(prepared: PreparedFullyConnected, acc: np.ndarray) -> np.ndarray:
    """The step-by-step kernel with the C's int32 wrap-arounds; for extreme layers only."""
    acc = wrap_int32(acc)
    multiplier = prepared.output_multiplier.astype(np.int64)
    shift = prepared.output_shift.astype(np.int64)
    if prepared.rounding == "double":
        scaled = requantize_double(acc, multiplier, shift)
    else:
        scaled = requantize_single(acc, multiplier, shift)
    return wrap_int32(scaled + prepared.output_offset)


def _accelerate(weights, bias, z_in, z_out, multiplier, shift, real, rounding) -> _Accelerator:
    """Precompute the Eval constants and decide whether the fused path is exact."""
    w64 = weights.astype(np.int64)
    acc_offset = bias.astype(np.int64) - z_in * w64.sum(axis=1)
    # Worst case |acc| over all int8 inputs: Σ|w|·max|x − z_in| + |bias|.
    abs_sum = np.abs(w64).sum(axis=1)
    acc_bound = abs_sum * max(INT8_MAX - z_in, z_in - INT8_MIN) + np.abs(bias.astype(np.int64))
    left = np.maximum(shift.astype(np.int64), 0)
    # |requantized| ≤ |acc|·real + 1 (rounding); adding z_out must stay in int32 too.
    out_bound = acc_bound * real + 2 + abs(z_out)
    # |Σ w·x| ≤ 128·Σ|w| and |offset| ≤ 128·Σ|w| + |bias| are both ≤ acc_bound, since
    # max|x − z_in| ≥ 128: acc_bound ≤ INT32_MAX keeps every int32 accumulator step exact.
    fused = bool(
        acc_bound.max() <= INT32_MAX
        and (rounding == "single" or np.all(acc_bound << left <= INT32_MAX))
        and out_bound.max() <= INT32_MAX
    )
    add, negative, total_shift = fused_requantization(multiplier, shift, rounding)
    zero_point_after = z_out
    # Fold z_out into the rounding constant, (v + z·2^S) >> S = (v >> S) + z, when the
    # sum stays below 2⁶³: |acc·M| < 2⁶², C ≤ 2⁶¹ + 2³⁰, |z·2^S| ≤ 2⁶⁰ for S ≤ 53.
    if total_shift.max() <= 53:
        add = add + (np.int64(z_out) << total_shift)
        zero_point_after = 0
    return _Accelerator(
        weights_t=np.ascontiguousarray(weights.T, dtype=np.float32),
        fused=fused,
        acc_offset=acc_offset.astype(np.int32 if fused else np.int64),
        multiplier=multiplier.astype(np.int64),
        add=add,
        negative=negative if np.any(negative) else None,
        total_shift=total_shift,
        zero_point_after=zero_point_after,
    )


def _check_weights(weights: np.ndarray) -> np.ndarray:
    weights = np.asarray(weights)
    if weights.dtype != np.int8:
        raise TypeError(f"weights must be int8, got {weights.dtype}")
    if weights.ndim != 2 or 0 in weights.shape:
        raise ValueError(f"weights must be a non-empty (out, depth) matrix, got {weights.shape}")
    return weights


def _check_scales(name: str, value) -> np.ndarray:
    scales = np.atleast_1d(np.asarray(value, dtype=np.float32)).reshape(-1)
    if scales.size == 0 or not np.all(np.isfinite(scales)) or not np.all(scales > 0):
        raise ValueError(f"{name} must be finite and > 0 in float32, got {value!r}")
    return scales


def _check_zero_point(name: str, value) -> int:
    if int(value) != value or not INT8_MIN <= int(value) <= INT8_MAX:
        raise ValueError(f"{name} must be an integer in [-128, 127], got {value!r}")
    return int(value)


def _check_bias(bias: np.ndarray | None, out_depth: int) -> np.ndarray:
    if bias is None:
        return np.zeros(out_depth, dtype=np.int32)
    bias = np.asarray(bias)
    if bias.dtype.kind not in "iu":
        raise TypeError(f"bias must be an integer (int32) array, got {bias.dtype}")
    if bias.shape != (out_depth,):
        raise ValueError(f"bias must have shape ({out_depth},), got {bias.shape}")
    if bias.size and (bias.min() < INT32_MIN or bias.max() > INT32_MAX):
        raise ValueError("bias values must fit int32")
    return bias.astype(np.int32)
