"""Turn a (merged) torch model of a built-in task into a device-runtime model.

:func:`to_device_model` reads the architecture off the torch model, calibrates it on
input batches (:func:`calibrate`), applies exact refactorings that let each int8 tensor's
single scale serve all its channels (:func:`fold_and_balance`, then per-channel
intermediate and output equalization), and quantizes every linear layer into int8 FCs
(GPTQ-rounded weights by default). How and why, with measurements and what was tried
and dropped: ``docs/calibration.md``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedlora.adapters.layer import AdaptedLinear
from fedlora.device_runtime import FullyConnectedChain, Int8Linear, RuntimeModel, architecture, quantize_linear
from fedlora.errors import FedloraError
from fedlora.export.calibration import ChannelRange, Moments, balance_intermediate, round_factors_gptq
from fedlora.factorize import FactorizedLinear
from fedlora.tasks.char_transformer import CharTransformer
from fedlora.tasks.mlp import MLP

__all__ = ["WEIGHT_ROUNDINGS", "architecture_of", "CalibratedLayer", "calibrate", "fold_and_balance", "input_norms", "to_device_model"]

#: how weights are rounded to int8: "gptq" (:func:`~fedlora.export.calibration.round_weights_gptq`)
#: or "nearest" (TFLite's converter)
WEIGHT_ROUNDINGS = ("gptq", "nearest")


def architecture_of(model: nn.Module) -> dict:
    """The device architecture (name and hyper-parameters) of a built-in task model."""
    if isinstance(model, CharTransformer):
        block = model.blocks[0]
        norms = {m.eps for m in model.modules() if isinstance(m, nn.LayerNorm)}
        if len(norms) != 1 or any(b.ffn.act.approximate != "tanh" for b in model.blocks):
            raise FedloraError("the transformer's layer norms must share one eps and its GELU must be the tanh approximation")
        return {
            "name": "char_transformer",
            "vocab_size": model.tok_emb.num_embeddings,
            "context": model.context,
            "d_model": model.tok_emb.embedding_dim,
            "n_layers": len(model.blocks),
            "n_heads": block.attn.n_heads,
            "d_ff": _out_features(block.ffn.fc1),
            "layer_norm_eps": norms.pop(),
        }
    if isinstance(model, MLP):
        hidden = [_out_features(model.get_submodule(f"fc{i}")) for i in range(1, model.num_hidden + 1)]
        return {"name": "mlp", "in_features": _in_features(model.fc1), "hidden": hidden,
                "num_classes": _out_features(model.head)}
    raise FedloraError(
        f"the device runtime runs the built-in architectures (CharTransformer of textlm, MLP of digits "
        f"and synthetic); this task's model is a {type(model).__name__}, which it cannot export"
    )


def input_norms(model: nn.Module) -> dict[str, list[str]]:
    """``{layer norm: [linear layers it feeds]}`` for the norms whose output goes to linear
    layers and nowhere else, so that their float32 affine can absorb those layers' input
    equalization."""
    if not isinstance(model, CharTransformer):
        return {}
    norms = {}
    for i in range(len(model.blocks)):
        norms[f"blocks.{i}.ln1"] = [f"blocks.{i}.attn.{name}" for name in ("q", "k", "v")]
        norms[f"blocks.{i}.ln2"] = [f"blocks.{i}.ffn.fc1"]
    norms["ln_f"] = ["head"]
    return norms


@dataclass
class CalibratedLayer:
    """One linear layer on its way to int8, in float64: ``y = F_L·…·F_0·x' + bias`` on
    the input ``x' = (x − input_offset) / input_scale`` (per channel; the identity until
    :meth:`fold_input`), with what calibration saw of it."""

    factors: list[np.ndarray]  # [W] dense, [V, U] factorized
    bias: np.ndarray | None
    inputs: ChannelRange  # of x'
    input_moments: Moments  # of x'
    outputs: ChannelRange  # of y, after a fused ReLU
    sensitivity: np.ndarray  # (out, out): E[g·gᵀ], g = ∂(decision margins)/∂y
    input_offset: np.ndarray | None = None
    input_scale: np.ndarray | None = None

    def equalized_input(self, x: np.ndarray) -> np.ndarray:
        return x if self.input_offset is None else (x - self.input_offset) / self.input_scale

    def fold_input(self, offset: np.ndarray, scale: np.ndarray) -> None:
        """Take ``x' = (x − offset)/scale`` as input: ``W·x + b = (W·diag(scale))·x' + (b + W·offset)``."""
        dense = self.factors[0]
        for factor in self.factors[1:]:
            dense = factor @ dense
        self.bias = (0.0 if self.bias is None else self.bias) + dense @ offset
        self.factors[0] = self.factors[0] * scale[None, :]
        self.inputs = self.inputs.affine(scale, offset)
        self.input_moments = self.input_moments.affine(scale, offset)
        self.input_offset, self.input_scale = offset, scale


def _factors(module: nn.Module, name: str) -> tuple[list[np.ndarray], np.ndarray | None]:
    """``([V, U], bias)`` of a factorized layer, ``([W], bias)`` of a dense one (float64)."""
    if isinstance(module, AdaptedLinear):
        if module.adapters and not module.merged:
            raise FedloraError(f"layer {name!r} has unmerged adapters; call set_merged(model, True) before exporting")
        module = module.base
    if isinstance(module, FactorizedLinear):
        weights = [module.v, module.u]
    elif isinstance(module, nn.Linear):
        weights = [module.weight]
    else:
        raise FedloraError(f"layer {name!r} is a {type(module).__name__}; expected a linear layer")
    bias = None if module.bias is None else module.bias.detach().double().numpy()
    return [w.detach().double().numpy() for w in weights], bias


def calibrate(
    model: nn.Module, batches: Iterable[torch.Tensor], activations: dict[str, str], seed: int = 0
) -> dict[str, CalibratedLayer]:
    """Every layer of ``activations`` (``{name: fused activation}``) with what ``model``
    showed of it on ``batches``: input ranges and second moments, output ranges, and the
    output sensitivity ``E[g·gᵀ]`` (see :func:`_decision_probe`)."""
    layers: dict[str, CalibratedLayer] = {}
    produced: dict[str, list[torch.Tensor]] = {name: [] for name in activations}
    handles = []
    for name, activation in activations.items():
        module = model.get_submodule(name)
        n_in, n_out = _in_features(module), _out_features(module)
        factors, bias = _factors(module, name)
        layers[name] = CalibratedLayer(factors, bias, ChannelRange(n_in), Moments(n_in), ChannelRange(n_out), np.zeros((n_out, n_out)))

        def hook(module, args, output, name=name, activation=activation):
            layer, x, y = layers[name], args[0].detach().numpy(), output.detach()
            layer.inputs.update(x)
            layer.input_moments.update(x)
            layer.outputs.update((torch.relu(y) if activation == "relu" else y).numpy())
            if not output.requires_grad:  # frozen weights all the way up: the graph starts here
                output = output.detach().requires_grad_()
            produced[name].append(output)  # the FFN calls its layers once per slice of tokens
            return output

        handles.append(module.register_forward_hook(hook))
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            for batch in batches:
                for outputs in produced.values():
                    outputs.clear()
                probe = _decision_probe(model(batch), generator)
                named = [(name, y) for name, outputs in produced.items() for y in outputs]
                grads = torch.autograd.grad(probe, [y for _, y in named], allow_unused=True)
                for (name, _), g in zip(named, grads):
                    if g is not None:
                        g = g.reshape(-1, g.shape[-1]).double().numpy()  # (rows, out)
                        layers[name].sensitivity += g.T @ g
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    for name, layer in layers.items():
        if not layer.inputs.seen:
            raise FedloraError(f"calibration never reached layer {name!r}; give calibration data")
    return layers


def _decision_probe(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``Σ_p ε_p·(l₁ − l₂)_p`` over the predictions ``p`` in ``logits`` (..., classes):
    ``l₁ ≥ l₂`` are a prediction's two largest logits, ``ε_p = ±1`` at random.

    Its gradient ``g`` at a layer's output satisfies, in expectation over the signs,
    ``E[g·gᵀ] = Σ_p J_pᵀ·J_p`` with ``J_p`` the Jacobian of prediction ``p``'s margin:
    how far an output error moves the decisions, which is what int8 must leave alone.
    Without the signs, the margins of different predictions (every position of a text
    window depends on the earlier ones) would mix into cross terms.
    """
    top2 = logits.detach().topk(2, dim=-1).indices
    best = logits.gather(-1, top2)  # (..., 2)
    signs = torch.randint(0, 2, best.shape[:-1], generator=generator).to(best.dtype) * 2 - 1
    return (signs * (best[..., 0] - best[..., 1])).sum()


def fold_and_balance(model: nn.Module, layers: dict[str, CalibratedLayer], floats: dict[str, np.ndarray]) -> None:
    """The exact refactorings that change weights, in place: fold each layer norm's
    output range into its affine (``floats``) and its consumers' first factors, then
    balance every factorized layer's intermediate (``docs/calibration.md``, step 3)."""
    for norm, consumers in input_norms(model).items():
        _fold_into_norm(norm, [layers[name] for name in consumers], floats)
    for layer in layers.values():
        if len(layer.factors) == 2:
            v, u = layer.factors
            u, v = balance_intermediate(u, v, layer.input_moments.covariance, layer.sensitivity)
            layer.factors = [v, u]


def _fold_into_norm(norm: str, consumers: list[CalibratedLayer], floats: dict[str, np.ndarray]) -> None:
    """Centre and scale every channel of ``norm``'s output to span [−1, 1], inside its
    affine: ``γ, β → γ/a, (β − c)/a``; the consumers undo it in their weights."""
    observed = consumers[0].inputs  # the norm's output, which every consumer sees
    offset = (observed.min + observed.max) / 2
    scale = (observed.max - observed.min) / 2
    scale = np.where(scale > 0, scale, 1.0)
    floats[f"{norm}.weight"] = floats[f"{norm}.weight"] / scale
    floats[f"{norm}.bias"] = (floats[f"{norm}.bias"] - offset) / scale
    for layer in consumers:
        layer.fold_input(offset, scale)


def _intermediate_ranges(model: nn.Module, batches: Iterable[torch.Tensor], layers: dict[str, CalibratedLayer]) -> dict[str, ChannelRange]:
    """Per-channel range of each factorized layer's intermediate ``V·x'``, with the
    layers' current (folded, balanced) factors."""
    ranges: dict[str, ChannelRange] = {}
    handles = []
    for name, layer in layers.items():
        if len(layer.factors) == 2:
            ranges[name] = ChannelRange(layer.factors[0].shape[0])

            def hook(module, args, output, name=name, layer=layer):
                x = layer.equalized_input(args[0].detach().double().numpy())
                ranges[name].update(x @ layer.factors[0].T)

            handles.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return ranges


def to_device_model(
    model: nn.Module,
    calibration: Iterable[torch.Tensor],
    rounding: str = "double",
    equalize: bool = True,
    weight_rounding: str = "gptq",
) -> RuntimeModel:
    """The device-runtime model of ``model`` (adapters merged), calibrated on ``calibration``
    (an iterable of input batches). ``equalize`` applies the exact refactorings of
    ``docs/calibration.md`` (step 3); without it, plain per-tensor min/max calibration.
    ``weight_rounding``: ``gptq`` or ``nearest``."""
    if weight_rounding not in WEIGHT_ROUNDINGS:
        raise FedloraError(f"weight rounding must be one of {', '.join(WEIGHT_ROUNDINGS)}, got {weight_rounding!r}")
    arch = architecture_of(model)
    runtime_class = architecture(arch["name"])
    config = runtime_class.parse_config(arch)
    shapes = runtime_class.linear_shapes(config)
    activations = {name: runtime_class.fused_activation(config, name) for name in shapes}
    batches = list(calibration)  # two passes: statistics, then intermediates
    layers = calibrate(model, batches, activations)
    state = model.state_dict()
    floats = {name: state[name].detach().double().numpy().copy() for name in runtime_class.float_shapes(config)}
    if equalize:
        fold_and_balance(model, layers, floats)
    intermediates = _intermediate_ranges(model, batches, layers)

    linears: dict[str, Int8Linear] = {}
    previous_output: tuple[float, float] | None = None
    for name in shapes:
        layer = layers[name]
        factors, bias = list(layer.factors), layer.bias
        ranges = [layer.inputs.tensor_range()]
        if runtime_class.chained and previous_output is not None:
            ranges = [previous_output]  # one int8 tensor between the two layers
        if len(factors) == 2:
            v, u = factors
            hidden_min, hidden_max = intermediates[name].min, intermediates[name].max
            if equalize:
                d = np.maximum(np.abs(hidden_min), np.abs(hidden_max))
                d = np.where(d > 0, d, 1.0)
                v, u = v / d[:, None], u * d[None, :]  # U·V = (U·D)·(D⁻¹·V)
                hidden_min, hidden_max = hidden_min / d, hidden_max / d
            factors = [v, u]
            ranges.append((float(hidden_min.min()), float(hidden_max.max())))
        out_min, out_max = layer.outputs.min, layer.outputs.max
        scale = offset = None
        if equalize and runtime_class.channel_affine_allowed(config, name):
            offset = (out_min + out_max) / 2
            scale = (out_max - out_min) / 2
            scale = np.where(scale > 0, scale, 1.0)
            factors = [*factors[:-1], factors[-1] / scale[:, None]]  # the last FC gives (y − o)/e
            bias = ((np.zeros_like(offset) if bias is None else bias) - offset) / scale
            out_min, out_max = (out_min - offset) / scale, (out_max - offset) / scale
        ranges.append((float(out_min.min()), float(out_max.max())))
        previous_output = ranges[-1]
        try:
            weights = round_factors_gptq(factors, layer.input_moments.second) if weight_rounding == "gptq" else None
            specs = quantize_linear(factors, bias, ranges, activations[name], weights)
            chain = FullyConnectedChain(specs, rounding)
        except ValueError as exc:
            raise FedloraError(f"cannot quantize layer {name!r}: {exc}; calibrate on data that exercises it") from exc
        linears[name] = Int8Linear(chain, scale, offset)

    return runtime_class(config, linears, {name: value.astype(np.float32) for name, value in floats.items()})

def _in_features(module: nn.Module) -> int:
    base = module.base if isinstance(module, AdaptedLinear) else module
    return base.in_features


def _out_features(module: nn.Module) -> int:
    base = module.base if isinstance(module, AdaptedLinear) else module
    return base.out_features

