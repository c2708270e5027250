"""The character-level transformer LM on the device runtime.

Mirrors ``fedlora.tasks.char_transformer.CharTransformer`` operation by operation (pre-norm
GPT blocks, learned positions, tanh GELU, LayerNorm eps from the manifest). Notation in
shape comments: B batch, T time (≤ context), C = d_model, F = d_ff, V vocabulary,
nh heads.

Which operation runs how:

=================================================  =========================================
operation                                          arithmetic
=================================================  =========================================
``blocks.i.attn.{q,k,v,o}``, ``blocks.i.ffn.{fc1,  int8 FC chain (:class:`.Int8Linear`):
fc2}`` (factorized: two FCs), ``head`` (one FC)    bit-exact to TFLM / CMSIS-NN, with float32
                                                   quantize before and dequantize after
token and position embedding lookup, their sum     float32
LayerNorm (``ln1``, ``ln2``, ``ln_f``)             float32
attention scores, causal mask, softmax, weighted   float32
sum over values
GELU (tanh approximation)                          float32
residual additions                                 float32
=================================================  =========================================

An exported bundle's layer norms are not the torch model's: their float32 affine also
scales and centres each channel for the linear layers they feed (``fedlora export``
folds the int8 input equalization of ``q, k, v``, ``fc1`` and ``head`` into it), which
those layers' weights undo. The runtime runs them as given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from . import ops
from .chain import FullyConnectedChain
from .models import MAX_LAYERS, MAX_SIZE, RuntimeModel, check_keys, positive_int

__all__ = ["CharTransformerConfig", "CharTransformerRuntime"]


@dataclass(frozen=True)
class CharTransformerConfig:
    vocab_size: int
    context: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    layer_norm_eps: float


class CharTransformerRuntime(RuntimeModel):
    name: ClassVar[str] = "char_transformer"
    input_kind: ClassVar[str] = "tokens"

    @classmethod
    def parse_config(cls, architecture: Mapping[str, Any]) -> CharTransformerConfig:
        fields = ("vocab_size", "context", "d_model", "n_layers", "n_heads", "d_ff")
        check_keys(architecture, {*fields, "layer_norm_eps"})
        values = {key: positive_int(architecture, key, MAX_LAYERS if key == "n_layers" else MAX_SIZE) for key in fields}
        eps = architecture["layer_norm_eps"]
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 < eps < 1:
            raise ValueError(f"architecture 'layer_norm_eps' must be a number in (0, 1), got {eps!r}")
        if values["d_model"] % values["n_heads"]:
            raise ValueError(
                f"architecture d_model={values['d_model']} is not divisible by n_heads={values['n_heads']}"
            )
        return CharTransformerConfig(**values, layer_norm_eps=float(eps))

    @classmethod
    def linear_shapes(cls, config: CharTransformerConfig) -> dict[str, tuple[int, int]]:
        C, F = config.d_model, config.d_ff
        shapes = {}
        for i in range(config.n_layers):
            for name in ("q", "k", "v", "o"):
                shapes[f"blocks.{i}.attn.{name}"] = (C, C)
            shapes[f"blocks.{i}.ffn.fc1"] = (C, F)
            shapes[f"blocks.{i}.ffn.fc2"] = (F, C)
        shapes["head"] = (C, config.vocab_size)
        return shapes

    @classmethod
    def float_shapes(cls, config: CharTransformerConfig) -> dict[str, tuple[int, ...]]:
        C = config.d_model
        shapes = {"tok_emb.weight": (config.vocab_size, C), "pos_emb.weight": (config.context, C)}
        for norm in [f"blocks.{i}.{ln}" for i in range(config.n_layers) for ln in ("ln1", "ln2")] + ["ln_f"]:
            shapes[f"{norm}.weight"] = (C,)
            shapes[f"{norm}.bias"] = (C,)
        return shapes

    def check_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """Token ids (N, T), integers in [0, vocab_size), 1 ≤ T ≤ context."""
        inputs = np.asarray(inputs)
        c = self.config
        if inputs.dtype.kind not in "iu" or inputs.ndim != 2 or not 1 <= inputs.shape[1] <= c.context:
            raise ValueError(
                f"inputs must be integer token ids of shape (N, T) with 1 <= T <= {c.context}, got "
                f"{inputs.dtype} {inputs.shape}"
            )
        if inputs.size and (inputs.min() < 0 or inputs.max() >= c.vocab_size):
            raise ValueError(
                f"token ids must lie in [0, {c.vocab_size}), got [{inputs.min()}, {inputs.max()}]"
            )
        return inputs.astype(np.int64)

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        """Token ids (B, T) → next-token logits (B, T, V), float32."""
        tokens = self.check_inputs(inputs)
        c, f, lin = self.config, self.floats, self.linears
        T = tokens.shape[1]
        x = ops.embedding(f["tok_emb.weight"], tokens) + f["pos_emb.weight"][:T]  # (B, T, C)
        for i in range(c.n_layers):
            p = f"blocks.{i}."
            h = self._norm(x, p + "ln1")
            q, k, v = (lin[p + f"attn.{n}"](h) for n in ("q", "k", "v"))  # (B, T, C) each
            x = x + lin[p + "attn.o"](ops.causal_self_attention(q, k, v, c.n_heads))
            h = self._norm(x, p + "ln2")
            x = x + lin[p + "ffn.fc2"](ops.gelu_tanh(lin[p + "ffn.fc1"](h)))  # (B, T, F) inside
        return lin["head"](self._norm(x, "ln_f"))  # (B, T, V)

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        return ops.layer_norm(x, self.floats[name + ".weight"], self.floats[name + ".bias"],
                              self.config.layer_norm_eps)

    def int8_chains(self) -> dict[str, FullyConnectedChain]:
        return {name: linear.chain for name, linear in self.linears.items()}

    def peak_activation_bytes(self, batch: int = 1) -> int:
        """Peak activation bytes of one forward pass over ``batch`` full context windows.

        Counts the buffers the runtime keeps live at once, stage by stage: the float32
        residual stream x, the normalized h, q/k/v, the attention scores (nh·T·T), the
        FFN hidden (T·F), the logits (T·V), and, during each linear layer, its int8
        input, intermediate and output (the C chain's buffers). The peak is the largest
        stage.
        """
        c = self.config
        T, C, F, V, H = batch * c.context, c.d_model, c.d_ff, c.vocab_size, c.n_heads
        f32 = 4

        def chain(name: str) -> int:  # int8 input + intermediates + output, per row
            linear = self.linears[name]
            return T * (linear.in_features + sum(linear.ranks) + linear.out_features)

        stages = [0]
        for i in range(c.n_layers):
            p = f"blocks.{i}."
            projections = f32 * T * C * (2 + 3) + max(chain(p + f"attn.{n}") for n in "qkv")
            attention = f32 * (T * C * 5 + batch * H * c.context * c.context)  # x, q, k, v, y
            out_projection = f32 * T * C * 3 + chain(p + "attn.o")  # x, y, output
            ffn_up = f32 * (2 * T * C + T * F) + chain(p + "ffn.fc1")  # x, h, hidden
            ffn_down = f32 * (T * C + T * F + T * C) + chain(p + "ffn.fc2")  # x, hidden, output
            stages += [projections, attention, out_projection, ffn_up, ffn_down]
        stages.append(f32 * (T * C + T * V) + chain("head"))  # h, logits
        return max(stages)
