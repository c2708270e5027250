"""``fedlora pretrain``: train the dense model on the server's public data (cached)."""

from __future__ import annotations

from fedlora.cache import cache_root
from fedlora.cli import options
from fedlora.cli.common import load_task, require_training
from fedlora.terminal import console
from fedlora.terminal import phase_progress


def pretrain(
    task: options.TaskName = "textlm",
    corpus: options.Corpus = None,
    steps: options.PretrainSteps = 1500,
    seed: options.Seed = 0,
    cache_dir: options.CacheDir = None,
) -> None:
    """Pretrain the dense model on the server's public data and cache it."""
    require_training("safetensors")
    from fedlora.metrics import evaluate
    from fedlora.pretrain import PretrainConfig, pretrained_model

    the_task = load_task(task, None, seed, corpus)
    with phase_progress() as start:
        model, cached = pretrained_model(the_task, PretrainConfig(steps=steps), seed, cache_root(cache_dir), on_step=start("pretrain", steps))
    metrics = evaluate(model, the_task.public().test)
    parameters = sum(p.numel() for p in model.parameters())
    console.print(f"task {the_task.describe()}; {parameters:,} parameters ({'cached' if cached else 'trained now'})")
    console.print("public test: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
