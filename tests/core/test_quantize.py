import numpy as np
import torch
from torch import nn

from fedlora.device_runtime.quantization import dequantize_symmetric, quantize_symmetric
from fedlora.factorize import factorize_model
from fedlora.quantize import quantize_base
from fedlora.rank import RankRule


def test_int8_round_trip_error_is_within_half_a_step_per_row():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(32, 48)).astype(np.float32) * rng.uniform(0.01, 3, size=(32, 1)).astype(np.float32)
    weights[5] = 0.0
    q, scale = quantize_symmetric(weights)
    assert q.dtype == np.int8 and q.min() >= -127
    assert np.all(scale > 0)
    error = np.abs(dequantize_symmetric(q, scale) - weights)
    assert np.all(error <= scale[:, None] / 2 * (1 + 1e-6))
    assert np.all(dequantize_symmetric(q, scale)[5] == 0)
    # the largest magnitude of each row maps to ±127 exactly
    assert np.all(np.abs(q[np.arange(32) != 5]).max(axis=1) == 127)


def test_quantize_base_freezes_and_holds_dequantized_values():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 4))
    factorize_model(model, r"^0$", RankRule("fixed", 3))
    tensors = quantize_base(model)
    assert set(tensors) == {"0.u.q", "0.u.scale", "0.v.q", "0.v.scale"}
    assert not any(p.requires_grad for p in model.parameters())
    expected = dequantize_symmetric(tensors["0.u.q"], tensors["0.u.scale"])
    assert np.array_equal(model[0].u.detach().numpy(), expected)
