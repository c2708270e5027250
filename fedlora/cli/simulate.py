"""``fedlora simulate``: federate adapters on Flower's simulation engine and measure the bytes."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from fedlora.cli import options
from fedlora.cli.console import console, err_console


class Baseline(str, Enum):
    none = "none"
    full = "full"
    local = "local"


def simulate(
    clients: Annotated[int, typer.Option("--clients", min=1, help="Number of simulated clients (Flower SuperNodes).")] = 100,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Federated rounds.")] = 8,
    fraction: Annotated[float, typer.Option("--fraction", help="Fraction of clients that train in each round.")] = 0.1,
    task: options.TaskName = "textlm",
    corpus: options.Corpus = None,
    method: Annotated[str, typer.Option("--method", help="fedit, ffa, core, fedsa or flexlora.")] = "fedit",
    rank: Annotated[int, typer.Option("--rank", min=1, help="Adapter rank.")] = 4,
    alpha: Annotated[float, typer.Option("--alpha", help="Adapter scaling numerator (s = alpha / rank).")] = 8.0,
    targets: Annotated[str, typer.Option("--targets", help="Regex of the adapted layers ('' = the task's default; textlm: ffn\\.fc2$).")] = "",
    local_steps: Annotated[int, typer.Option("--local-steps", min=0, help="Optimizer steps per client per round.")] = 30,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Examples per local step.")] = 16,
    lr: Annotated[float, typer.Option("--lr", help="Local learning rate.")] = 0.01,
    optimizer: Annotated[str, typer.Option("--optimizer", help="sgd, momentum or adam.")] = "adam",
    wire: Annotated[str, typer.Option("--wire", help="How updates travel: fp32, fp16 or int8 (per-row scales, error feedback).")] = "fp32",
    personal: Annotated[bool, typer.Option("--personal", help="Each client also keeps a personal adapter that never leaves it.")] = False,
    fleet: Annotated[
        str,
        typer.Option("--fleet", help="Give each client a device profile and train the plan that fits it: mcu, pi, mixed, or e.g. nrf52840:40,esp32s3:40,rpi4:20 (needs --method flexlora)."),
    ] = "",
    baseline: Annotated[Baseline, typer.Option("--baseline", help="Also run, with the same clients and seed: full-model FedAvg (full) or local-only adapters (local).")] = Baseline.none,
    param_ratio: options.ParamRatio = None,
    pretrain_steps: options.PretrainSteps = 1500,
    heal_steps: options.HealSteps = 300,
    seed: options.Seed = 0,
    out: Annotated[Path, typer.Option("--out", help="Folder for rounds, summaries, the plot and Flower's log.")] = Path("runs/latest"),
    cache_dir: options.CacheDir = None,
) -> None:
    """Federate adapters over the frozen INT8 base on Flower's simulation engine (Ray)."""
    from fedlora.cli.common import require_training

    require_training("flwr", "ray", "matplotlib", "safetensors")
    from fedlora.settings import FederationSettings

    settings = FederationSettings(
        task=task,
        corpus=str(corpus or ""),
        clients=clients,
        method=method,
        rounds=rounds,
        fraction=fraction,
        wire=wire,
        personal=personal,
        fleet=fleet,
        rank=rank,
        alpha=alpha,
        targets=targets,
        local_steps=local_steps,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        param_ratio=0.5 if param_ratio is None else param_ratio,
        pretrain_steps=pretrain_steps,
        heal_steps=heal_steps,
        seed=seed,
        out=str(out),
        cache_dir=str(cache_dir or ""),
    )
    if fleet:
        from fedlora.client.fleet import parse_fleet

        parse_fleet(fleet)  # before anything starts: every profile must exist
    runs = [settings]
    if baseline is not Baseline.none:
        full = baseline is Baseline.full  # dense FedAvg: every weight, no adapters, no device plans
        runs.append(
            settings.replace(method=baseline.value, run_name=baseline.value, personal=False, wire="fp32" if full else settings.wire, fleet="" if full else settings.fleet)
        )
    from fedlora.simulations.driver import run_invocation

    run_invocation(runs, console=console, err_console=err_console)
