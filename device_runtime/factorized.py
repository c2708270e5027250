"""A factorized linear layer run as two int8 FCs: ``y = U(Vx) + b``.

The base factors of ``W ≈ U·V``: ``V`` (rank, in) is applied first, ``U`` (out, rank)
second. A personalized layer is the same two FCs with its adapter merged in,
``W + s·B·A = [U | s·B]·[V ; A]`` (rank k + r; the adapter, as in LoRA, applies ``A``
first: ``Δy = s·B(Ax)``). The rank-sized intermediate ``V·x`` is an int8 tensor with its
own calibrated scale and zero point; the bias belongs to the second FC. Parameters drop
from ``out·in`` to ``rank·(out + in)``, and so do multiply-accumulates.
"""

from __future__ import annotations

import numpy as np

from .chain import FullyConnectedChain
from .fixed_point import Rounding
from .fully_connected import FullyConnectedSpec
from .post_training import quantize_linear
from .quantization import dequantize_activation, quantize_activation


class FactorizedLinear:
    """Two chained int8 FCs: ``first`` (in → rank), then ``second`` (rank → out)."""

    def __init__(
        self, first: FullyConnectedSpec, second: FullyConnectedSpec, rounding: Rounding = "double"
    ):
        self.chain = FullyConnectedChain([first, second], rounding)

    @classmethod
    def from_float(
        cls,
        u: np.ndarray,
        v: np.ndarray,
        bias: np.ndarray | None,
        calibration_inputs: np.ndarray,
        *,
        activation: str = "none",
        rounding: Rounding = "double",
    ) -> FactorizedLinear:
        """Quantize float factors, calibrating activation ranges on sample inputs.

        u: (out, rank), v: (rank, in), bias: (out,) or None, all float.
        calibration_inputs: (n, in) float samples of the layer input.
        Weights are quantized per output channel (symmetric); the input, the intermediate
        ``V·x`` and the output get asymmetric int8 parameters from the min/max the float
        layer produces on the samples, as TFLite's post-training calibration does.
        """
        u = np.asarray(u, dtype=np.float32)
        v = np.asarray(v, dtype=np.float32)
        x = np.asarray(calibration_inputs, dtype=np.float32)
        if u.ndim != 2 or v.ndim != 2 or u.shape[1] != v.shape[0]:
            raise ValueError(f"need u (out, rank) and v (rank, in), got {u.shape} and {v.shape}")
        if x.ndim != 2 or x.shape[1] != v.shape[1] or x.shape[0] == 0:
            raise ValueError(
                f"calibration_inputs must be (n, {v.shape[1]}) with n > 0, got {x.shape}"
            )
        hidden = x @ v.T  # (n, rank)
        y = hidden @ u.T + (0.0 if bias is None else np.asarray(bias, dtype=np.float32))
        if activation == "relu":
            y = np.maximum(y, 0)
        elif activation == "relu6":
            y = np.clip(y, 0, 6)
        ranges = [(a.min(), a.max()) for a in (x, hidden, y)]
        first, second = quantize_linear([v, u], bias, ranges, activation)
        return cls(first, second, rounding)

    @property
    def first(self) -> FullyConnectedSpec:
        return self.chain.layers[0].spec

    @property
    def second(self) -> FullyConnectedSpec:
        return self.chain.layers[1].spec

    @property
    def in_features(self) -> int:
        return self.chain.input_depth

    @property
    def rank(self) -> int:
        return self.chain.layers[0].output_depth

    @property
    def out_features(self) -> int:
        return self.chain.output_depth

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x`` (batch, in) int8 → (batch, out) int8."""
        return self.chain(x)

    def forward_float(self, x: np.ndarray) -> np.ndarray:
        """Float convenience: quantize ``x`` (batch, in), run int8, dequantize the output."""
        q = quantize_activation(x, self.first.input_scale, self.first.input_zero_point)
        return dequantize_activation(
            self.chain(q), self.second.output_scale, self.second.output_zero_point
        )
