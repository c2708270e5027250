"""Benchmark: how much task quality the frozen INT8 factorized base keeps.

For each parameter ratio of the factorized layers, builds the base with and without
healing (all from one cached pretrained model) and compares its metric with the dense
fp32 model on the server's public test split.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from fedlora.terminal import console
from fedlora.compress import DENSE, FACTORIZED_INT8, HEALED_INT8, CompressConfig, ProgressFactory, build_base
from fedlora.pretrain import PretrainConfig
from fedlora.rank import RankRule
from fedlora.tasks.base import Task


def run(
    task: Task,
    ratios: list[float],
    heal_steps: int,
    pretrain_steps: int,
    seed: int,
    cache: Path,
    progress: ProgressFactory | None = None,
    out: Path | None = None,
) -> list[dict]:
    rows = []
    for ratio in ratios:
        result = build_base(
            task,
            PretrainConfig(steps=pretrain_steps),
            CompressConfig(rank=RankRule("budget", ratio), heal_steps=heal_steps),
            seed,
            cache,
            progress=progress,
        )
        dense = result.metrics[DENSE]
        params = sum(layer.factorized_params for layer in result.layers) / sum(layer.dense_params for layer in result.layers)
        for stage in (FACTORIZED_INT8, HEALED_INT8):
            if stage in result.metrics:
                metrics = result.metrics[stage]
                rows.append(
                    {
                        "ratio": ratio,
                        "actual_ratio": params,
                        "stage": stage,
                        "dense": dense,
                        "metrics": metrics,
                        "perplexity_increase": metrics["perplexity"] / dense["perplexity"] - 1,
                        "bundle_bytes": result.bundle.size_bytes,
                    }
                )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"task": task.config, "fingerprint": task.fingerprint, "rows": rows}, indent=2))
    return rows


def print_results(rows: list[dict], task: Task) -> None:
    table = Table(title=f"dense fp32 vs factorized INT8 — {task.describe()}")
    for column in ("target ratio", "actual ratio", "model", "accuracy", "perplexity", "dense ppl", "Δ ppl", "bundle bytes"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            f"{row['ratio']:.2f}",
            f"{row['actual_ratio']:.3f}",
            row["stage"],
            f"{row['metrics']['accuracy']:.4f}",
            f"{row['metrics']['perplexity']:.4f}",
            f"{row['dense']['perplexity']:.4f}",
            f"{row['perplexity_increase']:+.2%}",
            f"{row['bundle_bytes']:,}",
        )
    console.print(table)
