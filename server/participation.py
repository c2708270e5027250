"""Who takes part in a run, who was lost, and whether the run may go on.

A client is *excluded* when its device fits no training plan: an expected outcome of a
fleet, reported but not a failure. A client is *absent* from a round when its reply there
was refused or never came (an error, a malformed reply, a timeout); after more than
``max_absences`` rounds in a row it is *lost*, as is a client that fails the handshake. A
lost client is not sampled again; an absent one is, and a reply in a later round ends its
absence (a device that rebooted comes back). ``min_clients`` is the fraction of the
clients able to take part that must stay; below it the run fails with every lost client's
name and reason. With the defaults (1.0, no absences allowed) any failure fails the run;
otherwise the run goes on and its summary says ``degraded`` and lists who was absent or
lost — never silently.
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
    max_absences: int = 0  # rounds in a row a client may miss before it is lost
    absences: list[dict] = field(default_factory=list)  # every round a client missed
    _in_a_row: dict[int, int] = field(default_factory=dict)

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
        return "failed" if not self.enough else "degraded" if self.lost or self.absences else "completed"

    def exclude(self, node: int, client: str, profile: str | None, reason: str) -> None:
        log(WARNING, "Node %s (%s) is excluded: %s", node, client, reason)
        self.excluded.append({"node": node, "client": client, "profile": profile, "reason": reason})

    def lose(self, node: int, client: str, stage: str, reason: str) -> None:
        log(WARNING, "Node %s (%s) is lost in %s: %s", node, client, stage, reason)
        self.taking_part.discard(node)
        self.lost.append({"node": node, "client": client, "stage": stage, "reason": reason})

    def miss(self, node: int, client: str, stage: str, reason: str) -> None:
        """``node`` missed a round: absent, or lost once it missed more than allowed in a row."""
        self._in_a_row[node] = self._in_a_row.get(node, 0) + 1
        if self._in_a_row[node] > self.max_absences:
            self.lose(node, client, stage, reason)
            return
        log(WARNING, "Node %s (%s) is absent from %s (%d in a row, %d allowed): %s", node, client, stage, self._in_a_row[node], self.max_absences, reason)
        self.absences.append({"node": node, "client": client, "stage": stage, "reason": reason})

    def answered(self, node: int) -> None:
        """``node``'s reply was accepted: whatever it missed before, it is back."""
        self._in_a_row.pop(node, None)

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
        return {
            "status": self.status, "taking_part": len(self.taking_part), "able": self.able, "lost": self.lost,
            "excluded": self.excluded, "absences": self.absences,
        }  # fmt: skip
