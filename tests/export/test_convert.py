"""The converter's calibration and refactorings: what it measures is what it claims, and
what it changes leaves the float function alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedlora.device_runtime.char_transformer import CharTransformerRuntime
from fedlora.export.convert import CalibratedLayer, architecture_of, calibrate, fold_and_balance, input_norms, to_device_model
from fedlora.factorize import factorize_model
from fedlora.rank import RankRule
from fedlora.tasks.char_transformer import CharTransformer

from test_runtime_mirrors_torch import randomized


class FloatFactors:
    """A calibrated layer's (refactored) float factors, called like an Int8Linear."""

    def __init__(self, layer: CalibratedLayer):
        self.layer = layer

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = x.astype(np.float64)
        for factor in self.layer.factors:
            y = y @ factor.T
        return (y if self.layer.bias is None else y + self.layer.bias).astype(np.float32)


@pytest.fixture(scope="module")
def factorized():
    torch.manual_seed(0)
    model = CharTransformer(vocab_size=13, context=16, d_model=32, n_layers=2, n_heads=4, d_ff=48)
    factorize_model(model, r"blocks\.\d+\.(attn|ffn)\.", RankRule("fixed", 6))
    model = randomized(model)
    tokens = torch.randint(0, 13, (24, 16), generator=torch.Generator().manual_seed(1))
    config = CharTransformerRuntime.parse_config(architecture_of(model))
    activations = {name: "none" for name in CharTransformerRuntime.linear_shapes(config)}
    return model, tokens, config, activations


def test_folding_and_balancing_leave_the_float_model_unchanged(factorized):
    model, tokens, config, activations = factorized
    layers = calibrate(model, [tokens[:12], tokens[12:]], activations)
    state = model.state_dict()
    floats = {name: state[name].double().numpy() for name in CharTransformerRuntime.float_shapes(config)}
    before = {name: [f.copy() for f in layer.factors] for name, layer in layers.items()}
    fold_and_balance(model, layers, floats)

    assert not np.allclose(floats["blocks.0.ln1.weight"], state["blocks.0.ln1.weight"].numpy())
    assert not np.allclose(layers["blocks.1.attn.k"].factors[0], before["blocks.1.attn.k"][0])
    for norm, consumers in input_norms(model).items():
        for name in consumers:  # every input channel now spans [−1, 1]
            np.testing.assert_allclose(layers[name].inputs.min, -1.0, atol=1e-9)
            np.testing.assert_allclose(layers[name].inputs.max, 1.0, atol=1e-9)
    runtime = CharTransformerRuntime(config, {name: FloatFactors(layer) for name, layer in layers.items()},
                                     {name: value.astype(np.float32) for name, value in floats.items()})
    with torch.no_grad():
        expected = model(tokens).numpy()
    np.testing.assert_allclose(runtime(tokens.numpy()), expected, rtol=1e-4, atol=1e-4)


def test_head_sensitivity_counts_each_predictions_top_two(factorized):
    """The head's output is the logits: each prediction's margin has gradient
    ``±(e_best − e_second)``, so the sensitivity is the sum of their outer products."""
    model, tokens, _, activations = factorized
    layers = calibrate(model, [tokens], activations)
    with torch.no_grad():
        top2 = model(tokens).topk(2, dim=-1).indices.reshape(-1, 2).numpy()
    expected = np.zeros((13, 13))
    for best, second in top2:
        d = np.zeros(13)
        d[best], d[second] = 1.0, -1.0
        expected += np.outer(d, d)
    np.testing.assert_allclose(layers["head"].sensitivity, expected, atol=1e-9)
    for name, layer in layers.items():  # every layer moves some decision
        assert np.all(np.linalg.eigvalsh(layer.sensitivity) > -1e-9) and np.trace(layer.sensitivity) > 0, name


def test_calibration_leaves_the_model_as_it_was(factorized):
    model, tokens, _, activations = factorized
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    calibrate(model, [tokens], activations)
    assert model.training and flags == [p.requires_grad for p in model.parameters()]
    assert all(p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks for m in model.modules())
    model.eval()


@pytest.mark.parametrize("options", [dict(), dict(weight_rounding="nearest"), dict(equalize=False, weight_rounding="nearest")])
def test_every_option_converts(factorized, options):
    model, tokens, _, _ = factorized
    runtime = to_device_model(model, [tokens], **options)
    with torch.no_grad():
        expected = model(tokens).numpy()
    assert np.abs(runtime(tokens.numpy()) - expected).max() < 0.1 * np.abs(expected).max()


def test_unknown_weight_rounding_is_refused(factorized):
    from fedlora.errors import FedloraError

    model, tokens, _, _ = factorized
    with pytest.raises(FedloraError, match="gptq, nearest"):
        to_device_model(model, [tokens], weight_rounding="stochastic")
