"""One adapted layer: a frozen factorized layer plus named low-rank updates.

    y = U(Vx) + bias + Σ_adapters s·B(R(Ax))

The layer wraps its base instead of subclassing it: the base stays a frozen
``FactorizedLinear`` and adapters only add. A layer usually carries one adapter,
``global`` (the federated one); a client that personalizes adds ``personal``, which never
leaves the device. Merging writes every update into the factors as one
rank-(k+Σr) factorization, ``[U | s·B·R | …] · [V ; A ; …]`` — no dense matrix is ever
formed, so a merged layer is still two thin, int8-friendly factors.
"""

from __future__ import annotations

import torch
from torch import nn

from fedlora.adapters.config import AdapterConfig
from fedlora.adapters.update import LowRankUpdate
from fedlora.errors import FedloraError
from fedlora.factorize import FactorizedLinear


class AdaptedLinear(nn.Module):
    def __init__(self, base: FactorizedLinear, name: str):
        super().__init__()
        if not isinstance(base, FactorizedLinear):
            raise FedloraError(f"layer {name!r} is {type(base).__name__}; adapters attach to factorized layers")
        self.name = name
        self.base = base.requires_grad_(False)
        self.base_rank = base.rank
        self.adapters = nn.ModuleDict()
        self.merged = False

    def check_adapter(self, adapter: str, config: AdapterConfig) -> None:
        """Raise if adapter ``adapter`` with ``config`` cannot be added to this layer."""
        limit = min(self.base.in_features, self.base.out_features)
        if config.rank > limit:
            raise FedloraError(
                f"adapter rank {config.rank} is larger than layer {self.name!r} allows "
                f"({self.base.out_features}×{self.base.in_features}, at most {limit}); choose --rank ≤ {limit}"
            )
        if adapter in self.adapters:
            raise FedloraError(f"layer {self.name!r} already has an adapter called {adapter!r}")
        if self.merged:
            raise FedloraError(f"layer {self.name!r} is merged; unmerge it before adding adapters")

    def add_adapter(self, adapter: str, config: AdapterConfig) -> None:
        self.check_adapter(adapter, config)
        self.adapters[adapter] = LowRankUpdate(self.base, config, key=f"{adapter}:{self.name}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged:
            return y
        for update in self.adapters.values():
            y = y + update(x)
        return y

    def set_merged(self, merged: bool) -> None:
        """Merge all updates into the factors, or take them out again.

        Unmerging slices the concatenation back to the base rank, so it restores the base
        factors bit for bit; the adapter tensors are never changed by either direction.
        """
        if merged == self.merged:
            return
        with torch.no_grad():
            if merged:
                pairs = [update.factors() for update in self.adapters.values()]
                u = torch.cat([self.base.u, *(b for b, _ in pairs)], dim=1)  # (m, k+Σr)
                v = torch.cat([self.base.v, *(a for _, a in pairs)], dim=0)  # (k+Σr, n)
            else:
                u = self.base.u[:, : self.base_rank]
                v = self.base.v[: self.base_rank]
            self.base.u = nn.Parameter(u.contiguous(), requires_grad=False)
            self.base.v = nn.Parameter(v.contiguous(), requires_grad=False)
        self.merged = merged

    def extra_repr(self) -> str:
        return f"merged={self.merged}"
