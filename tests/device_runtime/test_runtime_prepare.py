"""Prepare checks a layer once and fails early with a message naming the bad value."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fedlora.device_runtime import (
    FullyConnectedChain,
    FullyConnectedSpec,
    eval_fully_connected,
    prepare_fully_connected,
)


def good_spec(**changes) -> FullyConnectedSpec:
    spec = FullyConnectedSpec(
        weights=np.ones((3, 4), dtype=np.int8),
        weight_scale=np.array([0.1, 0.2, 0.3], dtype=np.float32),
        input_scale=0.5, input_zero_point=-3, output_scale=0.25, output_zero_point=7,
        bias=np.array([1, 2, 3], dtype=np.int32), activation="relu",
    )
    return dataclasses.replace(spec, **changes)


def test_good_spec_prepares():
    prepared = prepare_fully_connected(good_spec())
    assert (prepared.accum_depth, prepared.output_depth) == (4, 3)
    assert (prepared.input_offset, prepared.output_offset) == (3, 7)
    assert (prepared.output_activation_min, prepared.output_activation_max) == (7, 127)


@pytest.mark.parametrize(
    "changes, error, match",
    [
        (dict(weights=np.ones((3, 4), dtype=np.int16)), TypeError, "int8"),
        (dict(weights=np.ones((0, 4), dtype=np.int8)), ValueError, "non-empty"),
        (dict(weight_scale=np.array([0.1, 0.2])), ValueError, "per-channel"),
        (dict(weight_scale=np.array([0.1, 0.0, 0.3])), ValueError, "weight_scale"),
        (dict(input_scale=float("nan")), ValueError, "input_scale"),
        (dict(output_scale=-1.0), ValueError, "output_scale"),
        (dict(output_scale=1e-50), ValueError, "float32"),  # rounds to 0 in float32
        (dict(input_zero_point=128), ValueError, "input_zero_point"),
        (dict(output_zero_point=-129), ValueError, "output_zero_point"),
        (dict(bias=np.array([1.0, 2.0, 3.0])), TypeError, "bias"),
        (dict(bias=np.array([1, 2], dtype=np.int32)), ValueError, r"\(3,\)"),
        (dict(bias=np.array([2**31, 0, 0])), ValueError, "int32"),
        (dict(activation="tanh"), ValueError, "activation"),
        (dict(activation="relu6", output_scale=1e-12), ValueError, "overflows int32"),
        # effective scale 2³¹: a left shift by 32 in the double-rounding kernel.
        (dict(weight_scale=np.array([2.0**31] * 3), input_scale=1.0, output_scale=1.0),
         ValueError, "2\\^30"),
    ],
)
def test_bad_specs_fail_in_prepare(changes, error, match):
    with pytest.raises(error, match=match):
        prepare_fully_connected(good_spec(**changes))


def test_bad_rounding_mode():
    with pytest.raises(ValueError, match="rounding"):
        prepare_fully_connected(good_spec(), rounding="nearest")


def test_eval_checks_the_input_it_is_given():
    prepared = prepare_fully_connected(good_spec())
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        eval_fully_connected(prepared, np.zeros((2, 5), dtype=np.int8))
    with pytest.raises(ValueError, match="int8"):
        eval_fully_connected(prepared, np.zeros((2, 4), dtype=np.int32))


def test_chain_checks_links_between_layers():
    first = good_spec()
    second = good_spec(weights=np.ones((2, 3), dtype=np.int8), weight_scale=np.array([0.1]),
                       bias=None, input_scale=0.25, input_zero_point=7)
    FullyConnectedChain([first, second])  # links up
    with pytest.raises(ValueError, match="layer 0 output quantization"):
        FullyConnectedChain([first, dataclasses.replace(second, input_zero_point=6)])
    with pytest.raises(ValueError, match="layer 0 output quantization"):
        FullyConnectedChain([first, dataclasses.replace(second, input_scale=0.3)])
    with pytest.raises(ValueError, match="outputs 3 features"):
        FullyConnectedChain([first, dataclasses.replace(second, weights=np.ones((2, 4), np.int8))])
    with pytest.raises(ValueError, match="at least one layer"):
        FullyConnectedChain([])


def test_chain_memory_accounting():
    first = good_spec()  # 4 → 3, bias, per-channel
    second = good_spec(weights=np.ones((2, 3), dtype=np.int8), weight_scale=np.array([0.1]),
                       bias=None, input_scale=0.25, input_zero_point=7)
    chain = FullyConnectedChain([first, second])
    flash = chain.flash_bytes()
    assert flash["weights"] == 12 + 6
    assert flash["biases"] == 3 * 4
    assert flash["quant_params"] == (8 * 3 + 24) + (8 * 2 + 24)
    assert flash["total"] == flash["weights"] + flash["biases"] + flash["quant_params"]
    # Largest input + output pair: 4 + 3 per row.
    assert chain.peak_activation_bytes(batch=5) == 5 * 7


def test_eval_takes_the_wrapping_path_only_when_int32_can_overflow():
    """Prepare bounds |acc|: typical layers use the fused kernel, extreme ones the
    step-by-step kernel with the C's int32 wrap-around (both are bit-exact)."""
    assert prepare_fully_connected(good_spec())._fast.fused
    huge_bias = good_spec(bias=np.array([2**31 - 1, 0, 0], dtype=np.int32))
    assert not prepare_fully_connected(huge_bias)._fast.fused
    # Effective scale 8: the double-rounding left shift by 4 could wrap for |acc| ≥ 2²⁷.
    deep = good_spec(weights=np.full((3, 2**14), 127, dtype=np.int8), bias=None,
                     weight_scale=np.array([4.0]), input_scale=1.0, output_scale=0.5)
    assert not prepare_fully_connected(deep, "double")._fast.fused
    assert not prepare_fully_connected(deep, "single")._fast.fused  # output exceeds int32
