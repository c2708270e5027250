"""A linear layer of a float model, run as an int8 FC chain: float in, float out.

    x (…, in) float32
      → quantize with the chain's input (scale, zero point)          float32 → int8
      → FC chain: one FC (dense layer) or two, V then U (factorized)  int8, bit-exact
      → dequantize with the chain's output (scale, zero point)       int8 → float32
      → y = y·channel_scale + channel_offset, per output channel      float32 (optional)

Only the middle step is the int8 kernel (TFLM / CMSIS-NN, and the C reference); the
quantize and dequantize steps are the float glue around it. The optional per-channel
affine undoes an equalization the exporter folded into the last FC (its rows and bias
were divided by ``channel_scale`` after subtracting ``channel_offset``), so that every
output channel uses the full int8 range although the FC's output has a single scale.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .chain import FullyConnectedChain
from .quantization import dequantize_activation, quantize_activation

__all__ = ["Int8Linear"]

#: called with (int8 input, int8 output) of every run, e.g. to record oracle test vectors
Tracer = Callable[[np.ndarray, np.ndarray], None]


class Int8Linear:
    def __init__(
        self,
        chain: FullyConnectedChain,
        channel_scale: np.ndarray | None = None,
        channel_offset: np.ndarray | None = None,
    ):
        out = chain.output_depth
        for name, vector in (("channel_scale", channel_scale), ("channel_offset", channel_offset)):
            if vector is not None and np.shape(vector) != (out,):
                raise ValueError(f"{name} must have shape ({out},), got {np.shape(vector)}")
        if (channel_scale is None) != (channel_offset is None):
            raise ValueError("channel_scale and channel_offset come together")
        self.chain = chain
        self.channel_scale = None if channel_scale is None else np.asarray(channel_scale, np.float32)
        self.channel_offset = None if channel_offset is None else np.asarray(channel_offset, np.float32)
        first, last = chain.layers[0].spec, chain.layers[-1].spec
        self.input_scale, self.input_zero_point = first.input_scale, int(first.input_zero_point)
        self.output_scale, self.output_zero_point = last.output_scale, int(last.output_zero_point)
        self.tracer: Tracer | None = None

    @property
    def in_features(self) -> int:
        return self.chain.input_depth

    @property
    def out_features(self) -> int:
        return self.chain.output_depth

    @property
    def ranks(self) -> tuple[int, ...]:
        """Widths of the int8 intermediates: ``(rank,)`` for a factorized layer, ``()`` dense."""
        return tuple(layer.output_depth for layer in self.chain.layers[:-1])

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """float (rows, in) → int8 (rows, in) with the chain's input parameters."""
        return quantize_activation(x, self.input_scale, self.input_zero_point)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """int8 (rows, out) → float32 (rows, out), per-channel affine included."""
        y = dequantize_activation(q, self.output_scale, self.output_zero_point)
        if self.channel_scale is not None:
            y *= self.channel_scale
            y += self.channel_offset
        return y

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """float (…, in) → float32 (…, out)."""
        leading = x.shape[:-1]
        q = self.quantize(x.reshape(-1, self.in_features))
        out = self.chain(q)
        if self.tracer is not None:
            self.tracer(q, out)
        return self.dequantize(out).reshape(*leading, self.out_features)
