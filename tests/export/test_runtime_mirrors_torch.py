"""The device runtime's float32 glue mirrors the torch models operation by operation.

With float linear layers in place of the int8 ones, the numpy transformer and MLP must
reproduce torch's logits to float32 rounding; so any int8-vs-torch difference comes from
quantization alone. The ops are also checked one by one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedlora.device_runtime import ops
from fedlora.device_runtime.char_transformer import CharTransformerRuntime
from fedlora.device_runtime.mlp import MLPRuntime
from fedlora.export.convert import architecture_of, to_device_model
from fedlora.factorize import factorize_model
from fedlora.rank import RankRule
from fedlora.tasks.char_transformer import CharTransformer
from fedlora.tasks.mlp import MLP


class FloatLinear:
    """A torch linear layer called like an Int8Linear (float in, float out)."""

    def __init__(self, module: nn.Module):
        self.module = module

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    """Weights well away from the tiny GPT-2 init, so every op matters; layer-norm gains
    around 1."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight += 1.0
    return model.eval()


def test_char_transformer_float_path_matches_torch():
    torch.manual_seed(0)
    model = randomized(CharTransformer(vocab_size=13, context=16, d_model=32, n_layers=2, n_heads=4, d_ff=48))
    config = CharTransformerRuntime.parse_config(architecture_of(model))
    linears = {name: FloatLinear(model.get_submodule(name)) for name in CharTransformerRuntime.linear_shapes(config)}
    floats = {name: model.state_dict()[name].numpy() for name in CharTransformerRuntime.float_shapes(config)}
    runtime = CharTransformerRuntime(config, linears, floats)
    tokens = torch.randint(0, 13, (3, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(tokens).numpy()
    np.testing.assert_allclose(runtime(tokens.numpy()), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(runtime(tokens[:, :5].numpy()), expected[:, :5], rtol=1e-4, atol=1e-4)  # T < context


def test_layer_norm_gelu_softmax_match_torch():
    x = torch.randn(4, 7, 32, generator=torch.Generator().manual_seed(2)) * 3
    norm = randomized(nn.LayerNorm(32))
    with torch.no_grad():
        np.testing.assert_allclose(ops.layer_norm(x.numpy(), norm.weight.numpy(), norm.bias.numpy(), norm.eps),
                                   norm(x).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ops.gelu_tanh(x.numpy()), nn.GELU(approximate="tanh")(x).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ops.softmax(x.numpy()), torch.softmax(x, -1).numpy(), rtol=1e-5, atol=1e-7)


def test_causal_attention_matches_torch():
    """Against torch's own fused attention, an independent implementation."""
    generator = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 8, 16, generator=generator) * 2 for _ in range(3))

    def heads(t):
        return t.view(2, 8, 4, 4).transpose(1, 2)

    expected = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=True)
    expected = expected.transpose(1, 2).reshape(2, 8, 16)
    got = ops.causal_self_attention(q.numpy(), k.numpy(), v.numpy(), 4)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_mlp_float_path_matches_torch():
    model = randomized(MLP(20, [16, 12], 5))
    config = MLPRuntime.parse_config(architecture_of(model))
    assert MLPRuntime.linear_shapes(config) == {"fc1": (20, 16), "fc2": (16, 12), "head": (12, 5)}
    x = torch.rand(6, 20, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        h = x
        for name in ("fc1", "fc2"):
            h = torch.relu(getattr(model, name)(h))
        np.testing.assert_allclose(model.head(h).numpy(), model(x).numpy(), rtol=1e-6)


def test_converted_factorized_transformer_tracks_torch():
    """Whole conversion on a factorized model (no adapters): int8 logits close to torch."""
    torch.manual_seed(0)
    model = CharTransformer(vocab_size=13, context=16, d_model=32, n_layers=1, n_heads=4, d_ff=48)
    factorize_model(model, r"blocks\.\d+\.(attn|ffn)\.", RankRule("fixed", 8))
    tokens = torch.randint(0, 13, (32, 16), generator=torch.Generator().manual_seed(5))
    runtime = to_device_model(model.eval(), [tokens])
    assert [len(runtime.linears[n].chain.layers) for n in ("blocks.0.attn.q", "head")] == [2, 1]
    with torch.no_grad():
        expected = model(tokens).numpy()
    got = runtime(tokens.numpy())
    assert np.abs(got - expected).max() < 0.05 * np.abs(expected).max()


def test_unknown_architecture_is_refused():
    from fedlora.errors import FedloraError

    with pytest.raises(FedloraError, match="Sequential"):
        architecture_of(nn.Sequential(nn.Linear(3, 3)))
