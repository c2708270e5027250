"""What a run records: one JSON line per round, and a summary at the end.

Written to the run's folder (:class:`~fedlora.run_layout.RunLayout`: ``rounds.jsonl`` as
the run goes, ``summary.json`` at the end), so a run that stops halfway still leaves its
rounds behind.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fedlora.run_layout import RunLayout


def spread(values: list[float]) -> dict[str, float] | None:
    """Mean and per-client spread of a metric (None when no client reported it)."""
    if not values:
        return None
    return {
        "mean": statistics.fmean(values),
        "std": statistics.pstdev(values),
        "min": min(values),
        "max": max(values),
        "clients": len(values),
    }


@dataclass
class RunRecorder:
    layout: RunLayout
    on_record: Callable[[dict[str, Any]], None] | None = None
    rounds: list[dict[str, Any]] = field(default_factory=list)
    cumulative_bytes: int = 0

    def __post_init__(self) -> None:
        self.layout.directory.mkdir(parents=True, exist_ok=True)
        self.layout.rounds.write_text("")

    def record(self, entry: dict[str, Any]) -> None:
        self.cumulative_bytes += entry["bytes_up"] + entry["bytes_down"]
        entry["cumulative_bytes"] = self.cumulative_bytes
        self.rounds.append(entry)
        with open(self.layout.rounds, "a") as stream:
            stream.write(json.dumps(entry) + "\n")
        if self.on_record is not None:
            self.on_record(entry)

    def write_summary(self, summary: dict[str, Any]) -> None:
        self.layout.summary.write_text(json.dumps(summary, indent=2))
