"""Tiny whole models for the device runtime, built with numpy alone (no torch, no export).

Weights are random; activation ranges are calibrated by running the float layers on
random data, as the exporter does, so the int8 models are sensible but small.
"""

from __future__ import annotations

import numpy as np

from fedlora.device_runtime import FullyConnectedChain, Int8Linear, quantize_linear
from fedlora.device_runtime.char_transformer import CharTransformerConfig, CharTransformerRuntime
from fedlora.device_runtime.mlp import MLPConfig, MLPRuntime


def float_linear(rng, n_in: int, n_out: int, rank: int | None):
    """Float factors ``[V, U]`` (factorized) or ``[W]`` (dense) and a bias."""
    if rank is None:
        factors = [rng.normal(size=(n_out, n_in)) / np.sqrt(n_in)]
    else:
        factors = [rng.normal(size=(rank, n_in)) / np.sqrt(n_in), rng.normal(size=(n_out, rank)) / np.sqrt(rank)]
    return factors, 0.1 * rng.normal(size=n_out)


def calibrated_linear(rng, factors, bias, x, activation="none", input_range=None, affine=False, rounding="double"):
    """An :class:`Int8Linear` calibrated on float inputs ``x`` (rows, in)."""
    ranges = [input_range or (float(x.min()), float(x.max()))]
    h = x
    for i, w in enumerate(factors):
        h = h @ w.T
        if i == len(factors) - 1:
            h = h + bias
            if activation == "relu":
                h = np.maximum(h, 0)
        ranges.append((float(h.min()), float(h.max())))
    scale = offset = None
    if affine:
        low, high = h.min(axis=0), h.max(axis=0)  # per output channel
        offset = (low + high) / 2
        scale = np.maximum((high - low) / 2, 1e-6)
        factors = [*factors[:-1], factors[-1] / scale[:, None]]
        bias = (bias - offset) / scale
        ranges[-1] = (-1.0, 1.0)
    specs = quantize_linear(factors, bias, ranges, activation)
    return Int8Linear(FullyConnectedChain(specs, rounding), scale, offset), h


def tiny_char_transformer(seed: int = 0, rounding: str = "double") -> CharTransformerRuntime:
    rng = np.random.default_rng(seed)
    config = CharTransformerConfig(vocab_size=11, context=8, d_model=8, n_layers=2, n_heads=2, d_ff=16,
                                   layer_norm_eps=1e-5)
    floats = {}
    for name, shape in CharTransformerRuntime.float_shapes(config).items():
        if len(shape) == 2:  # embeddings
            floats[name] = 0.5 * rng.normal(size=shape)
        else:  # layer norm gain (about 1) and bias (about 0)
            floats[name] = float(name.endswith(".weight")) + 0.1 * rng.normal(size=shape)
    floats = {name: value.astype(np.float32) for name, value in floats.items()}
    linears = {}
    for i, (name, (n_in, n_out)) in enumerate(CharTransformerRuntime.linear_shapes(config).items()):
        rank = None if name == "head" else max(1, min(n_in, n_out) // 2)
        factors, bias = float_linear(rng, n_in, n_out, rank)
        x = rng.normal(size=(256, n_in))
        linears[name], _ = calibrated_linear(rng, factors, bias, x, affine=i % 2 == 0, rounding=rounding)
    return CharTransformerRuntime(config, linears, floats)


def tiny_mlp(seed: int = 0, rounding: str = "double") -> MLPRuntime:
    rng = np.random.default_rng(seed)
    config = MLPConfig(in_features=12, hidden=(10, 6), num_classes=4)
    x = rng.uniform(0, 1, size=(256, config.in_features))
    linears, input_range = {}, (0.0, 1.0)
    for name, (n_in, n_out) in MLPRuntime.linear_shapes(config).items():
        factors, bias = float_linear(rng, n_in, n_out, None if name == "head" else 3)
        activation = MLPRuntime.fused_activation(config, name)
        linears[name], x = calibrated_linear(rng, factors, bias, x, activation, input_range,
                                             affine=name == "head", rounding=rounding)
        input_range = (float(x.min()), float(x.max()))
    return MLPRuntime(config, linears, {})


def token_inputs(model: CharTransformerRuntime, rows: int = 5, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, model.config.vocab_size, size=(rows, model.config.context))


def feature_inputs(model: MLPRuntime, rows: int = 5, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, size=(rows, model.config.in_features)).astype(np.float32)
