"""Whole-model runtimes: hand-checked memory figures, input checks, and the int8 linear
layer's float glue."""

from __future__ import annotations

import numpy as np
import pytest

from model_cases import feature_inputs, tiny_char_transformer, tiny_mlp, token_inputs

from fedlora.device_runtime import architecture
from fedlora.device_runtime.quantization import dequantize_activation


def test_mlp_flash_bytes_by_hand():
    """in 12 → fc1 (rank 3) → 10 → fc2 (rank 3) → 6 → head → 4, five FCs."""
    flash = tiny_mlp().flash_bytes()
    assert flash["weights"] == 3 * 12 + 10 * 3 + 3 * 10 + 6 * 3 + 4 * 6  # int8, one byte each
    assert flash["biases"] == 4 * (10 + 6 + 4)  # on the last FC of each layer
    assert flash["quant_params"] == 8 * (3 + 10 + 3 + 6 + 4) + 5 * 24  # multiplier+shift per channel, 6 int32 per FC
    assert flash["float32_tensors"] == 8 * 4  # the head's per-channel scale and offset
    assert flash["total"] == 138 + 80 + 328 + 32


def test_mlp_peak_activations_by_hand():
    # float32 features (12) and logits (4); int8 chain input 12 and output 4, and two
    # scratch buffers of the widest intermediate (10) for a chain of more than two FCs.
    assert tiny_mlp().peak_activation_bytes(1) == 4 * (12 + 4) + (12 + 4 + 2 * 10)
    assert tiny_mlp().peak_activation_bytes(3) == 3 * 100


def test_transformer_peak_activations_by_hand():
    """T = 8, C = 8, F = 16, V = 11, nh = 2; attention is the largest stage: x, q, k, v,
    the attention output (5·T·C float32) and the scores (nh·T·T float32)."""
    model = tiny_char_transformer()
    assert model.peak_activation_bytes(1) == 4 * (5 * 8 * 8 + 2 * 8 * 8)
    assert model.peak_activation_bytes(2) == 2 * model.peak_activation_bytes(1)


def test_transformer_flash_counts_every_linear_and_float_tensor():
    model = tiny_char_transformer()
    flash = model.flash_bytes()
    weights = sum(layer.spec.weights.size for chain in model.int8_chains().values() for layer in chain.layers)
    assert flash["weights"] == weights
    floats = 4 * (11 * 8 + 8 * 8 + 5 * 2 * 8)  # embeddings, 5 layer norms
    affines = 8 * sum(linear.out_features for linear in model.linears.values() if linear.channel_scale is not None)
    assert flash["float32_tensors"] == floats + affines


def test_registry_and_architecture_round_trip():
    model = tiny_char_transformer()
    cls = architecture(model.architecture()["name"])
    assert cls.parse_config(model.architecture()) == model.config
    with pytest.raises(ValueError, match="unknown architecture 'gru'"):
        architecture("gru")


@pytest.mark.parametrize("bad, fragment", [
    (np.zeros((2, 9), dtype=np.int64), "1 <= T <= 8"),
    (np.zeros((2, 0), dtype=np.int64), "1 <= T <= 8"),
    (np.full((1, 3), 11), "[0, 11)"),
    (np.full((1, 3), -1), "[0, 11)"),
    (np.zeros((1, 3), dtype=np.float32), "integer token ids"),
    (np.zeros(3, dtype=np.int64), "(N, T)"),
])
def test_transformer_input_checks(bad, fragment):
    with pytest.raises(ValueError) as caught:
        tiny_char_transformer()(bad)
    assert fragment in str(caught.value)


@pytest.mark.parametrize("bad, fragment", [
    (np.zeros((2, 11)), "(N, 12)"),
    (np.array([[np.nan] * 12]), "finite"),
    (np.array([["a"] * 12]), "numbers"),
])
def test_mlp_input_checks(bad, fragment):
    with pytest.raises(ValueError) as caught:
        tiny_mlp()(bad)
    assert fragment in str(caught.value)


def test_shorter_sequences_are_prefixes():
    """Causal: the logits of the first t tokens do not depend on later ones."""
    model = tiny_char_transformer()
    tokens = token_inputs(model)
    full = model(tokens)
    np.testing.assert_allclose(model(tokens[:, :3]), full[:, :3], rtol=1e-5, atol=1e-5)


def test_int8_linear_glue_is_quantize_chain_dequantize_affine():
    linear = tiny_char_transformer().linears["blocks.0.attn.q"]
    assert linear.channel_scale is not None  # this case has the per-channel affine
    x = np.random.default_rng(3).normal(size=(4, 8)).astype(np.float32)
    q = linear.quantize(x)
    expected = dequantize_activation(linear.chain(q), linear.output_scale, linear.output_zero_point)
    expected = expected * linear.channel_scale + linear.channel_offset
    np.testing.assert_array_equal(linear(x), expected)
    seen = []
    linear.tracer = lambda q_in, q_out: seen.append((q_in, q_out))
    linear(x[None])  # leading dimensions are flattened into rows
    np.testing.assert_array_equal(seen[0][0], q)


def test_mlp_runs_as_one_int8_chain():
    model = tiny_mlp()
    x = feature_inputs(model)
    chain = model.int8_chains()["mlp"]
    assert len(chain.layers) == 5
    head = model.linears["head"]
    expected = head.dequantize(chain(model.linears["fc1"].quantize(x)))
    np.testing.assert_array_equal(model(x), expected)
