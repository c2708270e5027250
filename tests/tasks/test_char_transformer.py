"""The textlm model: names, shapes, parameter count, causality, and attention against torch's oracle."""

import re

import pytest
import torch
import torch.nn.functional as F

from fedlora.tasks.char_transformer import CausalSelfAttention, CharTransformer
from fedlora.tasks.textlm import TextLMTask
from fedlora.tasks.vocab import VOCAB_SIZE


def expected_parameters(V=97, T=64, d=64, L=2, d_ff=256):
    embeddings = V * d + T * d
    block = 2 * (2 * d) + 4 * (d * d + d) + (d * d_ff + d_ff) + (d_ff * d + d)
    return embeddings + L * block + 2 * d + (d * V + V)


def test_default_model_is_a_little_over_100k_parameters():
    model = CharTransformer(VOCAB_SIZE)
    count = sum(p.numel() for p in model.parameters())
    assert count == expected_parameters() == 116_705


def test_forward_maps_token_ids_to_next_token_logits():
    model = CharTransformer(VOCAB_SIZE, context=16, d_model=32, n_layers=1, n_heads=2, d_ff=64)
    tokens = torch.randint(VOCAB_SIZE, (3, 16))
    assert model(tokens).shape == (3, 16, VOCAB_SIZE)
    assert model(tokens[:, :5]).shape == (3, 5, VOCAB_SIZE)  # shorter than the context is fine
    with pytest.raises(ValueError, match="longer than the context"):
        model(torch.randint(VOCAB_SIZE, (1, 17)))


def test_default_targets_are_exactly_the_attention_and_ffn_layers():
    model = CharTransformer(VOCAB_SIZE)
    targets = [name for name, _ in model.named_modules() if re.search(TextLMTask.default_targets, name)]
    layers = ("attn.q", "attn.k", "attn.v", "attn.o", "ffn.fc1", "ffn.fc2")
    assert targets == [f"blocks.{i}.{layer}" for i in range(2) for layer in layers]
    assert all(isinstance(model.get_submodule(name), torch.nn.Linear) for name in targets)
    assert isinstance(model.head, torch.nn.Linear)


def test_state_dict_holds_parameters_only():
    # the causal mask is a non-persistent buffer: bundles and factorization see weights only
    model = CharTransformer(VOCAB_SIZE)
    assert set(model.state_dict()) == {name for name, _ in model.named_parameters()}


def test_model_is_causal():
    torch.manual_seed(0)
    model = CharTransformer(VOCAB_SIZE, context=32).eval()
    tokens = torch.randint(VOCAB_SIZE, (2, 32))
    changed = tokens.clone()
    changed[:, 20] = (changed[:, 20] + 1) % VOCAB_SIZE
    before, after = model(tokens), model(changed)
    torch.testing.assert_close(before[:, :20], after[:, :20], rtol=0, atol=0)
    assert not torch.allclose(before[:, 20:], after[:, 20:])


def test_explicit_attention_matches_torch_scaled_dot_product_attention():
    torch.manual_seed(1)
    attention = CausalSelfAttention(d_model=32, n_heads=4, context=16)
    x = torch.randn(2, 10, 32)
    B, T, C = x.shape

    def heads(t):
        return t.view(B, T, 4, 8).transpose(1, 2)

    q, k, v = heads(attention.q(x)), heads(attention.k(x)), heads(attention.v(x))
    oracle = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
    expected = attention.o(oracle.transpose(1, 2).reshape(B, T, C))
    torch.testing.assert_close(attention(x), expected, rtol=1e-5, atol=1e-6)


def test_gelu_is_the_tanh_approximation():
    model = CharTransformer(VOCAB_SIZE)
    assert model.blocks[0].ffn.act.approximate == "tanh"
