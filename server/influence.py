"""Bounded influence: no single client's update can dominate, or break, the global state.

Applied to every round's accepted updates before they are aggregated:

- **weight cap** — a client's weight is the number of examples it reports, capped at the
  size of its partition, which the server knows from the task (the partitions of the
  built-in tasks are derived from the run's seed). An honest client reports exactly that;
  a client claiming 10¹² examples weighs what its data does.
- **norm bound** — an update whose L2 norm (all its tensors together, in float64 so that
  values near float32's limit do not overflow) exceeds ``norm_bound`` × the reference
  norm is scaled down to it. The reference is the median of the norms accepted over the
  last ``window`` rounds, this one included: a minority of scaled or huge updates cannot
  move it. Updates are clipped, not dropped: the client's direction still counts.
  ``norm_bound`` 0 turns it off.

Whether the aggregate is finite is checked after aggregation (:mod:`.strategy`): a round
whose global state would not be is refused.
"""

from __future__ import annotations

import dataclasses
from collections import deque

import numpy as np

from fedlora.server.global_state import ClientResult

#: rounds of accepted update norms the reference median looks back over
WINDOW = 3


def update_norm(update: dict[str, np.ndarray]) -> float:
    """The L2 norm of all of an update's tensors together (float64: no overflow)."""
    return float(np.sqrt(sum(np.sum(np.square(value.astype(np.float64))) for value in update.values())))


@dataclasses.dataclass
class InfluenceBounds:
    norm_bound: float
    window: int = WINDOW
    _history: deque = dataclasses.field(default_factory=deque)

    def __post_init__(self) -> None:
        self._history = deque(maxlen=self.window)

    def apply(self, results: list[ClientResult], names: list[str], partition_sizes: list[int]) -> tuple[list[ClientResult], list[dict]]:
        """The results with capped weights and clipped updates, and a note for each client
        that was bounded (its name, what it claimed or sent, what counted)."""
        notes: list[dict] = []
        capped = []
        for result, name, size in zip(results, names, partition_sizes):
            if result.weight > size:
                notes.append({"client": name, "bound": "weight", "claimed": result.weight, "counted": float(size)})
                result = dataclasses.replace(result, weight=float(size))
            capped.append(result)
        if not self.norm_bound or not capped:
            return capped, notes
        norms = [update_norm(result.update) for result in capped]
        finite = [norm for norm in norms if np.isfinite(norm)]
        self._history.append(finite)
        window = [norm for round_norms in self._history for norm in round_norms]
        reference = float(np.median(window)) if window else 0.0
        limit = self.norm_bound * reference
        bounded = []
        for result, name, norm in zip(capped, names, norms):
            if norm > limit:  # inf included; a zero reference (all updates zero) zeroes the rest
                scale = limit / norm if np.isfinite(norm) and norm > 0 else 0.0
                notes.append({"client": name, "bound": "norm", "norm": norm, "limit": limit})
                result = dataclasses.replace(result, update={key: (value.astype(np.float64) * scale).astype(np.float32) for key, value in result.update.items()})
            bounded.append(result)
        return bounded, notes
