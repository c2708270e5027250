"""Property tests: the numpy runtime equals the pure-Python reference of the contract.

Thousands of random layers and chains (shapes, scales over 2⁻⁴⁰…2¹⁶ effective range,
zero points, biases up to the int32 limits, activations), both rounding modes. Scales
include exact powers of two, where rounding ties are common.
"""

from __future__ import annotations

import numpy as np
import tflm_reference as ref
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fedlora.device_runtime import (
    FullyConnectedChain,
    FullyConnectedSpec,
    activation_range,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
)
from fedlora.device_runtime.fixed_point import fused_requantization

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
roundings = st.sampled_from(["double", "single"])
activations = st.sampled_from(["none", "relu", "relu6"])
zero_points = st.integers(-128, 127)


def scales(lo_exp: int, hi_exp: int):
    """Positive float32 scales, log-uniform, with exact powers of two mixed in."""
    return st.one_of(
        st.floats(lo_exp, hi_exp).map(lambda e: float(np.float32(2.0**e))),
        st.integers(lo_exp, hi_exp).map(lambda e: 2.0**e),
    )


int32s = st.one_of(st.integers(-1000, 1000), st.integers(ref.INT32_MIN, ref.INT32_MAX))


@st.composite
def layers(draw, depth, out):
    """A FullyConnectedSpec of the given shape with random quantization."""
    per_channel = draw(st.booleans())
    weight_scale = np.array(
        draw(st.lists(scales(-24, 2), min_size=out if per_channel else 1,
                      max_size=out if per_channel else 1)), dtype=np.float32)
    return FullyConnectedSpec(
        weights=draw(arrays(np.int8, (out, depth))),
        weight_scale=weight_scale,
        input_scale=draw(scales(-12, 2)),
        input_zero_point=draw(zero_points),
        output_scale=draw(scales(-12, 4)),
        output_zero_point=draw(zero_points),
        bias=draw(st.none() | arrays(np.int32, (out,), elements=int32s)),
        activation=draw(activations),
    )


def reference_layer(spec: FullyConnectedSpec, x: np.ndarray, rounding: str) -> np.ndarray:
    out = ref.fully_connected(
        x.tolist(), spec.weights.tolist(), None if spec.bias is None else spec.bias.tolist(),
        input_scale=spec.input_scale, input_zero_point=spec.input_zero_point,
        weight_scales=np.ravel(spec.weight_scale).tolist(), output_scale=spec.output_scale,
        output_zero_point=spec.output_zero_point, activation=spec.activation,
        single=rounding == "single",
    )
    return np.array(out, dtype=np.int8).reshape(x.shape[0], spec.weights.shape[0])


@settings(max_examples=1500, **SETTINGS)
@given(data=st.data(), depth=st.integers(1, 12), out=st.integers(1, 6),
       batch=st.integers(1, 4), rounding=roundings)
def test_layer_matches_reference(data, depth, out, batch, rounding):
    spec = data.draw(layers(depth, out))
    x = data.draw(arrays(np.int8, (batch, depth)))
    got = FullyConnectedChain([spec], rounding)(x)
    np.testing.assert_array_equal(got, reference_layer(spec, x, rounding))


@st.composite
def chains(draw):
    widths = draw(st.lists(st.integers(1, 10), min_size=3, max_size=5))
    tensor_scales = [draw(scales(-10, 2)) for _ in widths]
    tensor_zps = [draw(zero_points) for _ in widths]
    specs = []
    for i, (depth, out) in enumerate(zip(widths, widths[1:])):
        spec = draw(layers(depth, out))
        specs.append(FullyConnectedSpec(
            spec.weights, spec.weight_scale, tensor_scales[i], tensor_zps[i],
            tensor_scales[i + 1], tensor_zps[i + 1], spec.bias, spec.activation,
        ))
    return specs


@settings(max_examples=400, **SETTINGS)
@given(data=st.data(), specs=chains(), batch=st.integers(1, 3), rounding=roundings)
def test_chain_matches_reference(data, specs, batch, rounding):
    x = data.draw(arrays(np.int8, (batch, specs[0].weights.shape[1])))
    expected = x
    for spec in specs:
        expected = reference_layer(spec, expected, rounding)
    np.testing.assert_array_equal(FullyConnectedChain(specs, rounding)(x), expected)


@settings(max_examples=25, **SETTINGS)
@given(seed=st.integers(0, 2**32 - 1), depth=st.integers(1020, 1100), rounding=roundings)
def test_deep_layer_accumulates_exactly(seed, depth, rounding):
    """Depths around the 1024-term float32 block boundary, at the largest partial sums.

    Rows and inputs of constant ±127 give odd products of 16129, so partial sums pass 2²⁴
    with odd values, which float32 cannot hold. At unit scale, a bias cancelling 16129·depth
    brings the sum back into int8 range, so any accumulator error shows in the output.
    """
    rng = np.random.default_rng(seed)
    weights = np.stack([np.full(depth, 127), np.full(depth, -127),
                        rng.integers(-128, 128, depth)]).astype(np.int8)
    residues = rng.integers(-100, 101, 2)
    bias = np.array([-16129 * depth + residues[0], -16129 * depth + residues[1],
                     rng.integers(-(2**20), 2**20)], dtype=np.int32)
    spec = FullyConnectedSpec(
        weights, np.array([1.0, 1.0, rng.uniform(1e-5, 1e-3)], dtype=np.float32),
        1.0, 0, 1.0, int(rng.integers(-20, 21)), bias,
    )
    x = np.stack([np.full(depth, 127), np.full(depth, -127), np.full(depth, -128),
                  rng.integers(-128, 128, depth)]).astype(np.int8)
    got = FullyConnectedChain([spec], rounding)(x)
    np.testing.assert_array_equal(got, reference_layer(spec, x, rounding))
    z_out = spec.output_zero_point
    assert got[0, 0] == residues[0] + z_out and got[1, 1] == residues[1] + z_out


@settings(max_examples=200, **SETTINGS)
@given(seed=st.integers(0, 2**32 - 1), rounding=roundings)
def test_multiply_by_quantized_multiplier_matches_reference(seed, rounding):
    """500 accumulators per example over the full int32 range, shifts in [−31, 30]."""
    rng = np.random.default_rng(seed)
    n = 500
    acc = rng.integers(ref.INT32_MIN, ref.INT32_MAX, n, endpoint=True)
    acc[:4] = [ref.INT32_MIN, ref.INT32_MAX, 0, -1]
    multiplier = rng.integers(ref.INT32_MIN, ref.INT32_MAX, n, endpoint=True)
    multiplier[:2] = ref.INT32_MIN
    shift = rng.integers(-31, 31, n)
    got = multiply_by_quantized_multiplier(acc, multiplier, shift, rounding)
    single = rounding == "single"
    expected = [ref.multiply_by_quantized_multiplier(int(a), int(m), int(s), single)
                for a, m, s in zip(acc, multiplier, shift)]
    assert got.tolist() == expected


@settings(max_examples=200, **SETTINGS)
@given(seed=st.integers(0, 2**32 - 1), rounding=roundings)
def test_fused_requantization_equals_the_two_step_kernel(seed, rounding):
    """The one-shift form, for multipliers from QuantizeMultiplier and no int32 wrap."""
    rng = np.random.default_rng(seed)
    real = 2.0 ** rng.uniform(-40, 12, 16)
    real[:3] = [0.25, 2.0**-33, 1.0]  # exact ties, a flushed multiplier, a left shift
    multiplier, shift = (a.astype(np.int64) for a in quantize_multiplier(real, rounding))
    limit = ref.INT32_MAX >> int(np.maximum(shift, 0).max())  # |acc·2^L| < 2³¹
    acc = rng.integers(-limit, limit, (64, 16), endpoint=True)
    acc[:5] = np.array([-limit, -2, -1, 0, 1])[:, None]
    add, negative, total = fused_requantization(multiplier, shift, rounding)
    fused = (acc * multiplier + add - ((acc >> 63) & negative)) >> total
    expected = multiply_by_quantized_multiplier(acc, multiplier, shift, rounding)
    np.testing.assert_array_equal(fused, expected)


reals = st.one_of(
    st.floats(0, 2.0**40, allow_nan=False, allow_infinity=False),
    st.floats(-45, 40).map(lambda e: 2.0**e),
    st.floats(-45, 40).map(lambda e: 2.0**e * (1 - 2.0**-40)),  # rounds to M = 2³¹
)


@settings(max_examples=1000, **SETTINGS)
@given(real=reals, rounding=roundings)
def test_quantize_multiplier_matches_reference(real, rounding):
    m, shift = quantize_multiplier(real, rounding)
    assert (int(m), int(shift)) == ref.quantize_multiplier(real, rounding == "single")


@settings(max_examples=300, **SETTINGS)
@given(activation=activations, scale=scales(-20, 6), zero_point=zero_points)
def test_activation_range_matches_reference(activation, scale, zero_point):
    assert activation_range(activation, scale, zero_point) == ref.activation_range(
        activation, scale, zero_point)
