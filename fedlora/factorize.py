"""Truncated-SVD factorization of ``nn.Linear`` layers into two thin linear factors.

A dense layer ``y = Wx + b`` with ``W`` (m×n) becomes ``y = U(Vx) + b`` with

    U = U_r · sqrt(S_r)   (m×r)        V = sqrt(S_r) · V_rᵀ   (r×n)

so the factors share the singular values evenly (balanced factors quantize better than
putting all of ``S`` on one side). Parameters drop from ``m·n`` to ``r·(m+n)``.

Given calibration inputs, the SVD is *activation-aware* (as in ASVD / SVD-LLM): it keeps
the directions that matter for the layer's actual inputs rather than for the weights alone.
With ``L`` the Cholesky factor of the inputs' second moment ``E[xxᵀ] = L·Lᵀ``, truncating
the SVD of ``W·L`` minimizes ``E‖(W − UV)x‖²``; then ``V = sqrt(S_r)·V_rᵀ·L⁻¹``.
Works on any ``nn.Module``: target layers are picked by a regular expression over
``named_modules()`` names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fedlora.errors import FedloraError
from fedlora.rank import RankRule


class FactorizedLinear(nn.Module):
    """``y = U(Vx) + bias``, a rank-``k`` replacement for an ``nn.Linear``."""

    def __init__(self, u: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        if u.shape[1] != v.shape[0]:
            raise ValueError(f"factor shapes {tuple(u.shape)} and {tuple(v.shape)} do not chain")
        self.u = nn.Parameter(u.detach().clone())  # (out, k)
        self.v = nn.Parameter(v.detach().clone())  # (k, in)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    @property
    def in_features(self) -> int:
        return self.v.shape[1]

    @property
    def out_features(self) -> int:
        return self.u.shape[0]

    @property
    def rank(self) -> int:
        return self.v.shape[0]

    def dense_weight(self) -> torch.Tensor:
        """The (out, in) matrix ``U·V`` this layer applies."""
        return self.u @ self.v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x, self.v), self.u, self.bias)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, rank={self.rank}"


def svd_factors(weight: torch.Tensor, rank: int, whitening: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced rank-``rank`` factors ``(U, V)`` of ``weight`` (m×n), in float32.

    ``whitening`` is the (n×n) lower-triangular Cholesky factor ``L`` of the inputs' second
    moment, or None for the plain SVD. The SVD runs in float64 so that the factors of a
    float32 layer are as exact as float32 can hold them.
    """
    weight = weight.detach().double()
    target = weight if whitening is None else weight @ whitening
    u_full, s, vh = torch.linalg.svd(target, full_matrices=False)
    root = s[:rank].sqrt()
    u = u_full[:, :rank] * root  # (m, r): columns scaled by sqrt(s)
    v = root[:, None] * vh[:rank]  # (r, n): rows scaled by sqrt(s)
    if whitening is not None:
        # V·L⁻¹, as the solution X of X·L = V (L is lower triangular)
        v = torch.linalg.solve_triangular(whitening, v, upper=False, left=False)
    return u.float(), v.float()


def singular_values(weight: torch.Tensor, whitening: torch.Tensor | None = None) -> torch.Tensor:
    weight = weight.detach().double()
    return torch.linalg.svdvals(weight if whitening is None else weight @ whitening)


@torch.no_grad()
def input_whitening(model: nn.Module, targets: str, batches: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per target layer, the Cholesky factor L of its inputs' second moment E[xxᵀ] = L·Lᵀ.

    A small ridge (1e-6 of the mean diagonal) keeps L invertible when some input
    direction never occurs in the calibration data.
    """
    layers = target_linears(model, targets)
    moments = {name: torch.zeros(linear.in_features, linear.in_features, dtype=torch.float64) for name, linear in layers}
    counts = dict.fromkeys(moments, 0)

    def accumulate(name: str):
        def hook(module, inputs, output):
            x = inputs[0].reshape(-1, inputs[0].shape[-1]).double()  # (tokens, n)
            moments[name] += x.T @ x
            counts[name] += x.shape[0]

        return hook

    handles = [linear.register_forward_hook(accumulate(name)) for name, linear in layers]
    was_training = model.training
    model.eval()
    try:
        for inputs in batches:
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    factors = {}
    for name, moment in moments.items():
        moment = moment / max(counts[name], 1)
        ridge = 1e-6 * moment.diagonal().mean().clamp_min(1e-12)
        factors[name] = torch.linalg.cholesky(moment + ridge * torch.eye(len(moment), dtype=torch.float64))
    return factors


@dataclass(frozen=True)
class LayerFactorization:
    """What factorizing one layer did, for reports and manifests."""

    name: str
    out_features: int
    in_features: int
    rank: int
    relative_error: float  # ‖W − UV‖_F / ‖W‖_F

    @property
    def dense_params(self) -> int:
        return self.out_features * self.in_features

    @property
    def factorized_params(self) -> int:
        return self.rank * (self.out_features + self.in_features)


def target_linears(model: nn.Module, targets: str) -> list[tuple[str, nn.Linear]]:
    """The ``nn.Linear`` layers whose names match ``targets`` (``re.search``), in order."""
    try:
        pattern = re.compile(targets)
    except re.error as exc:
        raise FedloraError(f"target pattern {targets!r} is not a valid regular expression: {exc}") from exc
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear) and pattern.search(name)]
    if not found:
        linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise FedloraError(
            f"target pattern {targets!r} matches no nn.Linear layer; the model's linear layers are: "
            f"{', '.join(linears) or '(none)'}"
        )
    return found


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule called ``name`` is."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def check_factorization(model: nn.Module, targets: str, rule: RankRule) -> None:
    """Fail early, before any training, when the targets match nothing or a fixed rank
    cannot fit a target layer (energy and budget rules fit by construction)."""
    for name, linear in target_linears(model, targets):
        if rule.kind == "fixed":
            _check_rank(name, int(rule.value), *linear.weight.shape)


def _check_rank(name: str, rank: int, out_features: int, in_features: int) -> None:
    if rank > min(out_features, in_features):
        raise FedloraError(
            f"rank {rank} is larger than layer {name!r} allows: it is {out_features}×{in_features}, "
            f"so its rank is at most {min(out_features, in_features)}. Choose a smaller rank, "
            "or use --energy / --param-ratio to pick ranks per layer."
        )


def factorize_model(
    model: nn.Module, targets: str, rule: RankRule, calibration: Iterable[torch.Tensor] | None = None
) -> list[LayerFactorization]:
    """Replace every target ``nn.Linear`` of ``model`` by its truncated-SVD factorization.

    With ``calibration`` (batches of model inputs) the SVD is activation-aware, and ranks
    are chosen from the whitened singular values. Ranks are checked for every layer before
    any layer is replaced, so a rank that does not fit leaves the model untouched.
    """
    check_factorization(model, targets, rule)
    whitening = input_whitening(model, targets, calibration) if calibration is not None else {}
    plans = []
    for name, linear in target_linears(model, targets):
        out_features, in_features = linear.weight.shape
        rank = rule.choose(singular_values(linear.weight, whitening.get(name)).numpy(), out_features, in_features)
        _check_rank(name, rank, out_features, in_features)
        plans.append((name, linear, rank))

    reports = []
    for name, linear, rank in plans:
        u, v = svd_factors(linear.weight, rank, whitening.get(name))
        weight = linear.weight.detach().float()
        error = torch.linalg.norm(weight - u @ v) / torch.linalg.norm(weight).clamp_min(1e-30)
        replace_module(model, name, FactorizedLinear(u, v, linear.bias))
        reports.append(LayerFactorization(name, linear.out_features, linear.in_features, rank, float(error)))
    return reports


def factorized_layers(model: nn.Module) -> dict[str, FactorizedLinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, FactorizedLinear)}


def factorize_like(model: nn.Module, ranks: dict[str, int]) -> None:
    """Give ``model`` empty factorized layers with the given ranks (to load a bundle into)."""
    for name, rank in ranks.items():
        linear = model.get_submodule(name)
        if not isinstance(linear, nn.Linear):
            raise FedloraError(f"layer {name!r} of the bundle is not an nn.Linear in this model")
        out_features, in_features = linear.weight.shape
        u = torch.zeros(out_features, rank)
        v = torch.zeros(rank, in_features)
        bias = None if linear.bias is None else torch.zeros(out_features)
        replace_module(model, name, FactorizedLinear(u, v, bias))
