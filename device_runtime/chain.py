"""A chain of int8 fully-connected layers, ``y = fc_L(… fc_2(fc_1(x)))``.

Each layer's int8 output is the next layer's int8 input, so the output quantization of
layer i must equal the input quantization of layer i + 1 (same float32 scale, same zero
point) and the widths must match; the chain checks this once, when built. This is the
unit that the C header (:mod:`.export_c`) and the ``.tflite`` writer export.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .fixed_point import Rounding, check_rounding
from .fully_connected import (
    FullyConnectedSpec,
    PreparedFullyConnected,
    check_input,
    eval_float32,
    prepare_fully_connected,
)

# Per-layer scalars stored next to the arrays (see fedlora_fc.h: accum_depth,
# output_depth, input_offset, output_offset, activation min and max), as int32.
LAYER_SCALAR_BYTES = 6 * 4


class FullyConnectedChain:
    """Prepared int8 FC layers run in sequence; call it on int8 (batch, depth) inputs."""

    def __init__(self, specs: Sequence[FullyConnectedSpec], rounding: Rounding = "double"):
        check_rounding(rounding)
        specs = tuple(specs)
        if not specs:
            raise ValueError("a chain needs at least one layer")
        self.rounding: Rounding = rounding
        self.layers: tuple[PreparedFullyConnected, ...] = tuple(
            prepare_fully_connected(spec, rounding) for spec in specs
        )
        for i, (a, b) in enumerate(zip(self.layers, self.layers[1:])):
            _check_link(i, a, b)

    @property
    def specs(self) -> tuple[FullyConnectedSpec, ...]:
        return tuple(layer.spec for layer in self.layers)

    @property
    def input_depth(self) -> int:
        return self.layers[0].accum_depth

    @property
    def output_depth(self) -> int:
        return self.layers[-1].output_depth

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x`` (batch, input_depth) int8 → (batch, output_depth) int8."""
        check_input(self.layers[0], x)
        # Between layers the int8 activations stay in float32, the form the next GEMM
        # wants; the values are the same int8 values.
        h = x.astype(np.float32)
        for layer in self.layers[:-1]:
            h = eval_float32(layer, h).astype(np.float32)
        return eval_float32(self.layers[-1], h).astype(np.int8)

    def flash_bytes(self) -> dict[str, int]:
        """Read-only bytes as stored by the C export: weights, biases, quantization params.

        quant_params counts per-channel int32 multipliers and shifts plus the per-layer
        int32 scalars; layers without a bias store none.
        """
        weights = sum(layer.spec.weights.size for layer in self.layers)
        biases = sum(4 * layer.output_depth for layer in self.layers if layer.spec.bias is not None)
        quant = sum(8 * layer.output_depth + LAYER_SCALAR_BYTES for layer in self.layers)
        return {"weights": weights, "biases": biases, "quant_params": quant,
                "total": weights + biases + quant}

    def peak_activation_bytes(self, batch: int = 1) -> int:
        """Peak int8 activation RAM: the largest input + output pair live at once.

        The C chain runs layer by layer with its input and output in separate buffers;
        accumulators are scalars, so nothing else scales with the layer size.
        """
        return max(batch * (layer.accum_depth + layer.output_depth) for layer in self.layers)


def _check_link(i: int, a: PreparedFullyConnected, b: PreparedFullyConnected) -> None:
    if a.output_depth != b.accum_depth:
        raise ValueError(
            f"layer {i} outputs {a.output_depth} features but layer {i + 1} expects "
            f"{b.accum_depth}"
        )
    scale_a, scale_b = np.float32(a.spec.output_scale), np.float32(b.spec.input_scale)
    if scale_a != scale_b or a.output_offset != -b.input_offset:
        raise ValueError(
            f"layer {i} output quantization (scale {scale_a!r}, zero point {a.output_offset}) "
            f"must equal layer {i + 1} input quantization (scale {scale_b!r}, zero point "
            f"{-b.input_offset}): the int8 tensor between them has one set of parameters"
        )
