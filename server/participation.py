"""Who takes part in a run, who was lost, and whether the run may go on.

A client is *excluded* when its device fits no training plan: an expected outcome of a
fleet, reported but not a failure. A client is *lost* when it failed: an error or a
malformed answer in the handshake, or a reply refused or missing in a round; a lost client
is not sampled again. ``min_clients`` is the fraction of the clients able to take part that
must stay; below it the run fails with every lost client's name and reason. With the
default 1.0 any lost client fails the run; with less, the run goes on and its summary says
``degraded`` and lists who was lost — never silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from logging import WARNING

from flwr.common import log

from fedlora.errors import FedloraError


@dataclass
class Participation:
    expected: int  # clients the run was started for; at the handshake, the nodes that connected
    min_clients: float
    taking_part: set[int] = field(default_factory=set)  # node ids
    excluded: list[dict] = field(default_factory=list)  # refused by their device's memory
    lost: list[dict] = field(default_factory=list)

    @property
    def able(self) -> int:
        """Clients able to take part: all but those whose device fits no plan."""
        return self.expected - len(self.excluded)

    @property
    def required(self) -> int:
        return math.ceil(self.min_clients * self.able - 1e-9)

    @property
    def enough(self) -> bool:
        return len(self.taking_part) >= max(self.required, 1)

    @property
    def status(self) -> str:
        return "failed" if not self.enough else "degraded" if self.lost else "completed"

    def exclude(self, node: int, client: str, profile: str | None, reason: str) -> None:
        log(WARNING, "Node %s (%s) is excluded: %s", node, client, reason)
        self.excluded.append({"node": node, "client": client, "profile": profile, "reason": reason})

    def lose(self, node: int, client: str, stage: str, reason: str) -> None:
        log(WARNING, "Node %s (%s) is lost in %s: %s", node, client, stage, reason)
        self.taking_part.discard(node)
        self.lost.append({"node": node, "client": client, "stage": stage, "reason": reason})

    def check(self) -> None:
        """Raise when fewer clients than the policy requires still take part."""
        if self.enough:
            return
        lost = "; ".join(f"{entry['client']} ({entry['stage']}): {entry['reason']}" for entry in self.lost) or "none"
        excluded = "".join(
            f"; excluded {entry['client']} ({entry['profile']}): {entry['reason']}" for entry in self.excluded
        )  # when every device was refused, the reasons are the news
        raise FedloraError(
            f"only {len(self.taking_part)} of the {self.able} clients able to take part are left, and --min-clients "
            f"{self.min_clients:g} needs {max(self.required, 1)}. Lost: {lost}{excluded}"
        )

    def record(self) -> dict:
        return {"status": self.status, "taking_part": len(self.taking_part), "able": self.able, "lost": self.lost, "excluded": self.excluded}
