"""Which adapter to attach, where, and how large."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from fedlora.errors import FedloraError

Variant = Literal["lora", "lora-fa", "core"]
VARIANTS: tuple[str, ...] = ("lora", "lora-fa", "core")


@dataclass(frozen=True)
class AdapterConfig:
    """An adapter per target layer: ``y = U(Vx) + s·B(Ax)``.

    variant:
        ``lora``    — A and B trainable; A initialised like ``nn.Linear``, B zero, so a new
                      adapter starts as the identity on the base.
        ``lora-fa`` — A frozen and identical on every client (drawn from ``seed`` and the
                      layer name); only B trains.
        ``core``    — A and B fixed to the layer's own top-``rank`` right and left singular
                      vectors; a trainable ``rank×rank`` core R sits between them
                      (``ΔW = s·B·R·A``), initialised to zero.
    rank:    adapter rank r (≥ 1; at most the layer's smaller side).
    alpha:   scaling numerator; the update is multiplied by ``s = alpha / rank``.
    targets: regular expression over layer names; ``None`` adapts every factorized layer.
    seed:    seeds A's initialisation (shared by all clients, so they start equal).
    """

    variant: Variant = "lora"
    rank: int = 4
    alpha: float = 8.0
    targets: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise FedloraError(f"unknown adapter variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        if not isinstance(self.rank, int) or self.rank < 1:
            raise FedloraError(f"adapter rank must be a whole number ≥ 1, got {self.rank!r}")
        if self.alpha <= 0:
            raise FedloraError(f"adapter alpha must be > 0, got {self.alpha}")

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def personal(self) -> AdapterConfig:
        """The personal adapter that sits beside this (global) one: same rank, alpha and
        targets, so both adapt the same layers.

        It is always ``lora``: it never leaves the client, so the variants that exist to
        shrink or align what travels (``lora-fa``, ``core``) buy it nothing. Its seed is the
        global seed + 1, so its A is a draw of its own rather than the shared one (the
        layer key also names the adapter; the seed rule stays because every ``--personal``
        run's numbers depend on it).
        """
        return AdapterConfig(variant="lora", rank=self.rank, alpha=self.alpha, targets=self.targets, seed=self.seed + 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
