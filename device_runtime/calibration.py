"""Post-training calibration: activation ranges in, int8 FC specs out.

A linear layer runs as a chain of int8 FCs, ``y = F_L(… F_1(x))`` (one FC for a dense
layer, two — ``V`` then ``U`` — for a factorized one). Quantizing it needs the float
weights of each FC and the range of every tensor on the way: the input, each
intermediate, the output. :class:`ChannelRange` collects those ranges per channel over
calibration batches; :func:`quantize_linear` turns weights and ranges into
:class:`FullyConnectedSpec` s the way TFLite's post-training quantizer does (weights
symmetric per output channel, activations asymmetric from min/max, bias int32 on the last
FC at scale ``s_in·s_w``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .fully_connected import FullyConnectedSpec
from .quantization import asymmetric_params_from_range, quantize_bias, quantize_symmetric

__all__ = ["ChannelRange", "quantize_linear"]


class ChannelRange:
    """Running per-channel min and max of an activation ``(..., channels)``."""

    def __init__(self, channels: int):
        self.min = np.full(channels, np.inf)
        self.max = np.full(channels, -np.inf)
        self.samples = 0  # rows seen

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(-1, self.min.size)
        if x.size:
            np.minimum(self.min, x.min(axis=0), out=self.min)
            np.maximum(self.max, x.max(axis=0), out=self.max)
        self.samples += x.shape[0]

    @property
    def seen(self) -> bool:
        return self.samples > 0

    def tensor_range(self) -> tuple[float, float]:
        """Per-tensor ``(min, max)`` over every channel."""
        if not self.seen:
            raise ValueError("no calibration data reached this activation")
        return float(self.min.min()), float(self.max.max())


def quantize_linear(
    factors: Sequence[np.ndarray],
    bias: np.ndarray | None,
    ranges: Sequence[tuple[float, float]],
    activation: str = "none",
) -> list[FullyConnectedSpec]:
    """int8 FC specs for ``y = factors[-1] · … · factors[0] · x + bias``.

    factors: float matrices applied in order, ``factors[i]`` of shape (d_{i+1}, d_i).
    ranges: ``len(factors) + 1`` float ``(min, max)`` pairs — the input, every
    intermediate, the output (after ``activation``) — as calibrated.
    activation: fused on the last FC ("none", "relu", "relu6").
    Raises ``ValueError`` for shapes that do not chain or a degenerate range.
    """
    if len(ranges) != len(factors) + 1:
        raise ValueError(f"{len(factors)} factors need {len(factors) + 1} ranges, got {len(ranges)}")
    for a, b in zip(factors, factors[1:]):
        if np.shape(b)[1] != np.shape(a)[0]:
            raise ValueError(f"factor shapes {np.shape(a)} and {np.shape(b)} do not chain")
    params = [asymmetric_params_from_range(lo, hi) for lo, hi in ranges]
    specs = []
    for i, weights in enumerate(factors):
        q, scale = quantize_symmetric(weights)
        (s_in, z_in), (s_out, z_out) = params[i], params[i + 1]
        last = i == len(factors) - 1
        specs.append(FullyConnectedSpec(
            q, scale, s_in, z_in, s_out, z_out,
            bias=quantize_bias(bias, s_in, scale) if last and bias is not None else None,
            activation=activation if last else "none",
        ))
    return specs
