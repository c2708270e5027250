"""One low-rank update ``ΔW = s·B·R·A`` of one layer (R = I unless the variant is core)."""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from fedlora.adapters.config import AdapterConfig
from fedlora.factorize import FactorizedLinear


def layer_generator(seed: int, key: str) -> torch.Generator:
    """A generator that every client derives identically from (seed, key)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    generator = torch.Generator()
    generator.manual_seed(int.from_bytes(digest[:8], "little"))
    return generator


class LowRankUpdate(nn.Module):
    """``x ↦ s·B(R(Ax))`` with A (r×n), B (m×r) and, for ``core``, R (r×r).

    Its tensors are named ``lora_A``, ``lora_B``, ``lora_R``; frozen ones are buffers, so
    ``requires_grad`` alone says what trains.
    """

    def __init__(self, base: FactorizedLinear, config: AdapterConfig, key: str):
        super().__init__()
        self.variant = config.variant
        self.scaling = config.scaling
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
        a = (torch.rand(r, n, generator=layer_generator(config.seed, key)) * 2 - 1) * bound
        if config.variant == "lora-fa":
            self.register_buffer("lora_A", a)  # (r, n), frozen and shared by seed
        else:
            self.lora_A = nn.Parameter(a)  # (r, n)
        self.lora_B = nn.Parameter(torch.zeros(m, r))  # (m, r)

    @property
    def rank(self) -> int:
        return self.lora_A.shape[0]

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(s·B·R, A)``: the update as two factors, ``ΔW = (s·B·R)·A``."""
        b = self.lora_B @ self.lora_R if self.variant == "core" else self.lora_B
        return self.scaling * b, self.lora_A

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.linear(x, self.lora_A)  # (..., r)
        if self.variant == "core":
            h = F.linear(h, self.lora_R)  # (..., r)
        return self.scaling * F.linear(h, self.lora_B)  # (..., m)

    def extra_repr(self) -> str:
        return f"variant={self.variant}, rank={self.rank}, scaling={self.scaling:g}"
