"""``fedlora compress``: build the frozen INT8 factorized base and report what it cost."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from fedlora.cache import cache_root
from fedlora.cli import options
from fedlora.cli.common import load_task, require_training, rank_rule
from fedlora.terminal import console
from fedlora.terminal import phase_progress


def layer_table(result) -> Table:
    """Per layer: shape, rank, parameters before/after, bytes fp32 vs INT8, reconstruction error."""
    table = Table(title="factorized layers")
    for column in ("layer", "shape", "rank", "params dense", "params factorized", "fp32 bytes", "int8 bytes", "rel. error"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    totals = [0, 0, 0, 0]
    for layer in result.layers:
        m, n, r = layer.out_features, layer.in_features, layer.rank
        fp32_bytes = 4 * m * n
        int8_bytes = r * (m + n) + 4 * (m + r)  # int8 factors + one float32 scale per row
        totals = [t + x for t, x in zip(totals, (m * n, r * (m + n), fp32_bytes, int8_bytes))]
        table.add_row(layer.name, f"{m}×{n}", str(r), f"{m * n:,}", f"{r * (m + n):,}", f"{fp32_bytes:,}", f"{int8_bytes:,}", f"{layer.relative_error:.4f}")
    table.add_row("total", "", "", *(f"{t:,}" for t in totals), "", style="bold")
    return table


def metric_table(result) -> Table:
    table = Table(title="task metric on the public test split")
    names = list(next(iter(result.metrics.values())))
    table.add_column("model")
    for name in names:
        table.add_column(name, justify="right")
    for stage, metrics in result.metrics.items():
        table.add_row(stage, *(f"{metrics[name]:.4f}" for name in names))
    return table


def compress(
    task: options.TaskName = "textlm",
    corpus: options.Corpus = None,
    rank: options.Rank = None,
    energy: options.Energy = None,
    param_ratio: options.ParamRatio = None,
    targets: options.Targets = None,
    heal_steps: options.HealSteps = 300,
    pretrain_steps: options.PretrainSteps = 1500,
    seed: options.Seed = 0,
    cache_dir: options.CacheDir = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Also copy the base bundle to this folder.")] = None,
) -> None:
    """Factorize the pretrained model by truncated SVD, heal it, quantize it to INT8, bundle it."""
    require_training("safetensors")
    from fedlora.compress import CompressConfig, build_base
    from fedlora.pretrain import PretrainConfig

    config = CompressConfig(rank=rank_rule(rank, energy, param_ratio), targets=targets, heal_steps=heal_steps)
    the_task = load_task(task, None, seed, corpus)
    with phase_progress() as start:
        result = build_base(the_task, PretrainConfig(steps=pretrain_steps), config, seed, cache_root(cache_dir), progress=start)
    console.print(layer_table(result))
    console.print(metric_table(result))
    console.print(f"base bundle {result.bundle.id[:16]}… ({result.bundle.size_bytes:,} bytes) at {result.bundle.path}" + (" (cached)" if result.cached else ""))
    console.print(f"corpus fingerprint {the_task.fingerprint}")
    if out is not None:
        shutil.copytree(result.bundle.path, out, dirs_exist_ok=True)
        console.print(f"copied to {out}")
