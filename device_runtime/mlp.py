"""The multi-layer perceptron on the device runtime: one int8 chain from input to logits.

Mirrors ``fedlora.tasks.mlp.MLP``: ``fc1 … fcN`` with ReLU, then ``head``. ReLU is fused
into the last FC of each hidden layer (its int8 clamp), and each layer's int8 output is
the next layer's int8 input, so the whole model is a single :class:`FullyConnectedChain`
(two FCs per factorized layer, one per dense one):

====================================  ===============================================
operation                             arithmetic
====================================  ===============================================
quantize the input features           float32 → int8 (the first FC's input parameters)
every linear layer, ReLU clamps       int8 FC chain, bit-exact to TFLM / CMSIS-NN
dequantize the logits                 int8 → float32 (+ the head's per-channel affine)
====================================  ===============================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .chain import FullyConnectedChain
from .linear import Int8Linear
from .models import MAX_LAYERS, MAX_SIZE, RuntimeModel, check_keys, positive_int

__all__ = ["MLPConfig", "MLPRuntime"]


@dataclass(frozen=True)
class MLPConfig:
    in_features: int
    hidden: tuple[int, ...]
    num_classes: int


class MLPRuntime(RuntimeModel):
    name: ClassVar[str] = "mlp"
    input_kind: ClassVar[str] = "features"
    chained: ClassVar[bool] = True

    def __init__(self, config: MLPConfig, linears: Mapping[str, Int8Linear], floats: Mapping[str, np.ndarray]):
        super().__init__(config, linears, floats)
        order = list(self.linear_shapes(config))
        specs = [spec for name in order for spec in self.linears[name].chain.specs]
        rounding = self.linears["head"].chain.rounding
        # One chain: its constructor checks that every layer's output quantization is the
        # next layer's input quantization (ValueError otherwise).
        self.chain = FullyConnectedChain(specs, rounding)
        self._first, self._head = self.linears[order[0]], self.linears["head"]

    @classmethod
    def parse_config(cls, architecture: Mapping[str, Any]) -> MLPConfig:
        check_keys(architecture, {"in_features", "hidden", "num_classes"})
        hidden = architecture["hidden"]
        if not (isinstance(hidden, list) and hidden and all(
                isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in hidden)):
            raise ValueError(f"architecture 'hidden' must be a non-empty list of positive integers, got {hidden!r}")
        if len(hidden) > MAX_LAYERS or max(hidden) > MAX_SIZE:
            raise ValueError(f"architecture 'hidden' may have at most {MAX_LAYERS} layers of at most {MAX_SIZE} units")
        return MLPConfig(positive_int(architecture, "in_features"), tuple(hidden),
                         positive_int(architecture, "num_classes"))

    @classmethod
    def linear_shapes(cls, config: MLPConfig) -> dict[str, tuple[int, int]]:
        widths = [config.in_features, *config.hidden]
        shapes = {f"fc{i}": (a, b) for i, (a, b) in enumerate(zip(widths, widths[1:]), start=1)}
        shapes["head"] = (widths[-1], config.num_classes)
        return shapes

    @classmethod
    def fused_activation(cls, config: MLPConfig, layer: str) -> str:
        return "none" if layer == "head" else "relu"

    @classmethod
    def float_shapes(cls, config: MLPConfig) -> dict[str, tuple[int, ...]]:
        return {}

    @classmethod
    def channel_affine_allowed(cls, config: MLPConfig, layer: str) -> bool:
        return layer == "head"  # hidden outputs feed the next FC as int8: no float step

    def check_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """Features (N, in_features), finite floats."""
        inputs = np.asarray(inputs)
        n = self.config.in_features
        if inputs.dtype.kind not in "fiu" or inputs.ndim != 2 or inputs.shape[1] != n:
            raise ValueError(f"inputs must be numbers of shape (N, {n}), got {inputs.dtype} {inputs.shape}")
        inputs = inputs.astype(np.float32)
        if not np.all(np.isfinite(inputs)):
            raise ValueError("inputs must be finite (found NaN or infinity)")
        return inputs

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        """Features (N, in_features) → logits (N, num_classes), float32."""
        x = self._first.quantize(self.check_inputs(inputs))  # (N, in) int8
        return self._head.dequantize(self.chain(x))  # (N, classes)

    def int8_chains(self) -> dict[str, FullyConnectedChain]:
        return {"mlp": self.chain}

    def peak_activation_bytes(self, batch: int = 1) -> int:
        """Float32 input and logits, plus the int8 chain's input, output and scratch
        (``fedlora_fc_chain_get_buffer_size``: one buffer of the widest intermediate for
        two FCs, two for more)."""
        layers = self.chain.layers
        widest = max((layer.output_depth for layer in layers[:-1]), default=0)
        scratch = widest * (2 if len(layers) > 2 else len(layers) - 1)
        int8 = batch * (self.chain.input_depth + self.chain.output_depth + scratch)
        return 4 * batch * (self.config.in_features + self.config.num_classes) + int8
