"""Post-training quantization of a linear layer: float weights and calibrated ranges in,
int8 FC specs out, the way TFLite's converter does it.

A linear layer runs as a chain of int8 FCs, ``y = F_L(… F_1(x))`` (one FC for a dense
layer, two for a factorized one: ``V`` first, then ``U``). Quantizing it needs the float
weights of each FC and the range of every tensor on the way — the input, each
intermediate, the output: weights become symmetric per output channel
(:func:`~.quantization.quantize_symmetric`), activations asymmetric from their min/max
(:func:`~.quantization.asymmetric_params_from_range`), the bias int32 on the last FC at
scale ``s_in·s_w``.

This is the rule that ties a layer's stored numbers to the kernels, so it lives with
them: the runtime's own tests and :meth:`.FactorizedLinear.from_float` build models with
numpy alone. Collecting the ranges, and choosing each weight's rounding more cleverly
than to nearest, is the exporter's work on the host (``fedlora.export.calibration``); it
hands its int8 weights in through ``weights``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .fully_connected import FullyConnectedSpec
from .quantization import asymmetric_params_from_range, quantize_bias, quantize_symmetric

__all__ = ["quantize_linear"]


def quantize_linear(
    factors: Sequence[np.ndarray],
    bias: np.ndarray | None,
    ranges: Sequence[tuple[float, float]],
    activation: str = "none",
    weights: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> list[FullyConnectedSpec]:
    """int8 FC specs for ``y = factors[-1] · … · factors[0] · x + bias``.

    factors: float matrices applied in order, ``factors[i]`` of shape (d_{i+1}, d_i).
    ranges: ``len(factors) + 1`` float ``(min, max)`` pairs — the input, every
    intermediate, the output (after ``activation``) — as calibrated.
    activation: fused on the last FC ("none", "relu", "relu6").
    weights: the int8 weights and per-row scales of each factor, rounded elsewhere (e.g.
    by GPTQ); by default each factor is rounded to nearest with
    :func:`~.quantization.quantize_symmetric`.
    Raises ``ValueError`` for shapes that do not chain or a degenerate range.
    """
    if len(ranges) != len(factors) + 1:
        raise ValueError(f"{len(factors)} factors need {len(factors) + 1} ranges, got {len(ranges)}")
    for a, b in zip(factors, factors[1:]):
        if np.shape(b)[1] != np.shape(a)[0]:
            raise ValueError(f"factor shapes {np.shape(a)} and {np.shape(b)} do not chain")
    if weights is None:
        weights = [quantize_symmetric(factor) for factor in factors]
    elif len(weights) != len(factors) or any(np.shape(q) != np.shape(f) for (q, _), f in zip(weights, factors)):
        raise ValueError("weights must give one int8 matrix of its factor's shape per factor")
    params = [asymmetric_params_from_range(lo, hi) for lo, hi in ranges]
    specs = []
    for i, (q, scale) in enumerate(weights):
        (s_in, z_in), (s_out, z_out) = params[i], params[i + 1]
        last = i == len(factors) - 1
        specs.append(FullyConnectedSpec(
            q, scale, s_in, z_in, s_out, z_out,
            bias=quantize_bias(bias, s_in, scale) if last and bias is not None else None,
            activation=activation if last else "none",
        ))
    return specs
