"""One adapted layer: a frozen factorized layer plus a low-rank update.

    y = U(Vx) + bias + s · B(Ax)            lora, lora-fa
    y = U(Vx) + bias + s · B(R(Ax))         core

The adapter wraps its base layer instead of subclassing it: the base stays a frozen
``FactorizedLinear`` and the adapter only adds. Merging writes the update into the factors
as one rank-(k+r) factorization, ``[U | s·B·R] · [V ; A]`` — no dense matrix is ever formed,
so a merged layer is still two thin int8-friendly factors.
"""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from fedlora.adapters.config import AdapterConfig
from fedlora.errors import FedloraError
from fedlora.factorize import FactorizedLinear


def layer_generator(seed: int, layer_name: str) -> torch.Generator:
    """A generator that every client derives identically from (seed, layer name)."""
    digest = hashlib.sha256(f"{seed}:{layer_name}".encode()).digest()
    generator = torch.Generator()
    generator.manual_seed(int.from_bytes(digest[:8], "little"))
    return generator


class AdaptedLinear(nn.Module):
    def __init__(self, base: FactorizedLinear, config: AdapterConfig, name: str):
        super().__init__()
        if not isinstance(base, FactorizedLinear):
            raise FedloraError(f"layer {name!r} is {type(base).__name__}; adapters attach to factorized layers")
        limit = min(base.in_features, base.out_features)
        if config.rank > limit:
            raise FedloraError(
                f"adapter rank {config.rank} is larger than layer {name!r} allows "
                f"({base.out_features}×{base.in_features}, at most {limit}); choose --rank ≤ {limit}"
            )
        self.base = base.requires_grad_(False)
        self.variant = config.variant
        self.scaling = config.scaling
        self.base_rank = base.rank
        self.merged = False

        r, n, m = config.rank, base.in_features, base.out_features
        if config.variant == "core":
            # Fixed to the base layer's own top-r singular subspaces: ΔW = B·R·A lives in
            # span(U_r) ⊗ span(V_r), and R (r×r) is all a client trains or sends.
            u_full, _, vh = torch.linalg.svd(base.dense_weight().detach().double(), full_matrices=False)
            self.register_buffer("lora_A", vh[:r].float().contiguous())  # (r, n)
            self.register_buffer("lora_B", u_full[:, :r].float().contiguous())  # (m, r)
            self.lora_R = nn.Parameter(torch.zeros(r, r))
            return
        # A like nn.Linear's default init (kaiming-uniform, a=√5), B zero: starts as identity.
        bound = 1.0 / math.sqrt(n)
        a = (torch.rand(r, n, generator=layer_generator(config.seed, name)) * 2 - 1) * bound
        if config.variant == "lora-fa":
            self.register_buffer("lora_A", a)  # (r, n), frozen and shared by seed
        else:
            self.lora_A = nn.Parameter(a)  # (r, n)
        self.lora_B = nn.Parameter(torch.zeros(m, r))  # (m, r)

    @property
    def rank(self) -> int:
        return self.lora_A.shape[0]

    def delta_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(s·B·R, A)``: the update ``ΔW = s·B·R·A`` as two factors (R = I unless core)."""
        b = self.lora_B @ self.lora_R if self.variant == "core" else self.lora_B
        return self.scaling * b, self.lora_A

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged:
            return y
        h = F.linear(x, self.lora_A)  # (..., r)
        if self.variant == "core":
            h = F.linear(h, self.lora_R)  # (..., r)
        return y + self.scaling * F.linear(h, self.lora_B)

    def set_merged(self, merged: bool) -> None:
        """Merge the update into the factors (``[U | s·B·R]·[V ; A]``) or take it out again.

        Unmerging slices the concatenation back to the base rank, so it restores the base
        factors bit for bit; the adapter tensors are never changed by either direction.
        """
        if merged == self.merged:
            return
        with torch.no_grad():
            if merged:
                delta_b, delta_a = self.delta_factors()
                u = torch.cat([self.base.u, delta_b], dim=1)  # (m, k+r)
                v = torch.cat([self.base.v, delta_a], dim=0)  # (k+r, n)
            else:
                u = self.base.u[:, : self.base_rank]
                v = self.base.v[: self.base_rank]
            self.base.u = nn.Parameter(u.contiguous(), requires_grad=False)
            self.base.v = nn.Parameter(v.contiguous(), requires_grad=False)
        self.merged = merged

    def extra_repr(self) -> str:
        return f"variant={self.variant}, rank={self.rank}, scaling={self.scaling:g}, merged={self.merged}"
