"""``fedlora plan``: will local training fit this device, and in what configuration?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from fedlora.cli import options
from fedlora.terminal import console


def breakdown_table(plan) -> Table:
    """Component, bytes and where it lives, with the totals against the profile's budget."""
    from fedlora.client.profiles import format_bytes

    b, p = plan.breakdown, plan.profile
    table = Table(title=f"one local training step on {p.name}: {plan.describe()}")
    for column in ("component", "bytes", "", "in"):
        table.add_column(column, justify="left" if column in ("component", "in") else "right")
    for name, size, where in b.rows():
        table.add_row(name, f"{size:,}", format_bytes(size), where)
    table.add_section()
    table.add_row("training step (RAM)", f"{b.training_bytes:,}", format_bytes(b.training_bytes), "ram", style="bold")
    table.add_row("budget: usable RAM" + (f" less {plan.margin:.0%} margin" if plan.margin else ""), f"{plan.budget_bytes:,}", format_bytes(plan.budget_bytes), "ram")
    table.add_row("RAM with the reserve / on the board", f"{b.ram_bytes:,}", f"{format_bytes(b.ram_bytes)} / {format_bytes(p.total_ram)}", "ram")
    if b.frozen_in == "flash":
        table.add_row("flash for the base / usable", f"{b.flash_bytes:,}", f"{format_bytes(b.flash_bytes)} / {format_bytes(p.usable_flash)}", "flash")
    return table


def print_plan(plan, method, wire: str) -> None:
    from fedlora.links import airtime
    from fedlora.client.device_plan import update_message_bytes

    console.print(breakdown_table(plan))
    console.print(f"[dim]{plan.breakdown.explain_peak()}[/]")
    if plan.changes:
        console.print("changed to fit:")
        for change in plan.changes:
            console.print(f"  • {change.describe()}")
    payload = plan.update_bytes(method.travels, wire)
    message = update_message_bytes(plan, method.travels, wire)
    sent = airtime(message, plan.profile.uplink)
    verdict = "within its limits" if sent.fits else f"[red]over its limits[/]: {sent.reason}"
    console.print(
        f"update ({method.name}): {payload:,} B of {wire} adapter values, {message:,} B as a Flower message → "
        f"{sent.airtime_s:.3g} s on air, {sent.wall_s:.3g} s wall time over {sent.link} ({sent.frames} frame{'s' if sent.frames != 1 else ''}), {verdict}"
    )
    style = "green" if plan.fits else "red"
    console.print(f"[bold {style}]{plan.verdict()}[/]")


def profiles_table() -> Table:
    from fedlora.client.profiles import builtin_profiles, format_bytes

    table = Table(title="built-in device profiles (fedlora/client/profiles.toml)")
    for column in ("profile", "board", "cpu", "RAM", "usable", "flash for weights", "uplink"):
        table.add_column(column)
    for p in builtin_profiles().values():
        ram = format_bytes(p.ram) + (f" + {format_bytes(p.psram)} PSRAM" if p.psram else "")
        flash = format_bytes(p.usable_flash) if p.weights_in_flash else "— (base in RAM)"
        table.add_row(p.name, p.description, f"{p.cpu} {p.clock_mhz:g} MHz", ram, format_bytes(p.usable_ram), flash, p.uplink.name)
    return table


def plan(
    profile: Annotated[
        Optional[str],
        typer.Option("--profile", help="Device: a built-in name (see --list), FILE.toml or FILE.toml#NAME, or inline 'name=myboard,base=nrf52840,ram=512KiB'."),
    ] = None,
    task: options.TaskName = "textlm",
    corpus: options.Corpus = None,
    method: Annotated[str, typer.Option("--method", help="fedit, ffa, core, fedsa or flexlora (decides the adapter variant).")] = "fedit",
    rank: Annotated[int, typer.Option("--rank", min=1, help="Requested adapter rank.")] = 4,
    alpha: Annotated[float, typer.Option("--alpha", help="Adapter scaling numerator (s = alpha / rank).")] = 8.0,
    targets: Annotated[Optional[str], typer.Option("--targets", help="Regex of the layers to adapt (default: the task's adapter targets).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Examples per optimizer step.")] = 16,
    micro_batch: Annotated[Optional[int], typer.Option("--micro-batch", min=1, help="Examples per forward/backward pass (default: the batch size).")] = None,
    optimizer: Annotated[str, typer.Option("--optimizer", help="Requested optimizer: sgd, momentum or adam.")] = "adam",
    checkpointing: Annotated[bool, typer.Option("--checkpointing", help="Ask for activation checkpointing from the start.")] = False,
    personal: Annotated[bool, typer.Option("--personal", help="The client also trains a personal adapter.")] = False,
    param_ratio: Annotated[float, typer.Option("--param-ratio", help="Parameter ratio the base was factorized with (decides layer ranks).")] = 0.5,
    bundle: Annotated[Optional[Path], typer.Option("--bundle", help="A base bundle folder: take the exact layer ranks from it.")] = None,
    margin: Annotated[float, typer.Option("--margin", min=0.0, max=0.99, help="Fraction of the usable RAM to keep free.")] = 0.0,
    wire: Annotated[str, typer.Option("--wire", help="How the update would travel (fp32, fp16, int8), for its size and airtime.")] = "int8",
    search: Annotated[bool, typer.Option("--search/--no-search", help="Search for a configuration that fits, or only judge the request.")] = True,
    list_profiles: Annotated[bool, typer.Option("--list", help="List the built-in device profiles and exit.")] = False,
    seed: options.Seed = 0,
) -> None:
    """Predict the memory of one local training step on a device, and find a configuration that fits."""
    from fedlora.errors import FedloraError

    if list_profiles:
        console.print(profiles_table())
        return
    if profile is None:
        raise FedloraError("give --profile (a built-in name, FILE.toml or FILE.toml#NAME, or 'name=...'); --list shows the built-in ones")
    from fedlora.adapters import AdapterConfig
    from fedlora.adapters.keys import layer_pattern
    from fedlora.bundle import read_base_bundle
    from fedlora.cli.common import load_task
    from fedlora.client.device_plan import base_ranks, task_planner
    from fedlora.client.plan_search import PlanRefused, PlanRequest
    from fedlora.client.profiles import load_profile
    from fedlora.methods import get_method
    from fedlora.train import TrainConfig
    from fedlora.wire import check_format

    device = load_profile(profile)  # validate the cheap inputs before loading the task
    check_format(wire)
    if targets:
        layer_pattern(targets)
    the_method = get_method(method)
    variant = the_method.variant
    if variant is None:
        raise FedloraError(f"method {method!r} trains the dense model, not adapters; plan an adapter method (fedit, ffa, core, fedsa, flexlora)")
    the_task = load_task(task, None, seed, corpus)
    adapter = AdapterConfig(variant=variant, rank=rank, alpha=alpha, targets=targets or getattr(the_task, "default_adapter_targets", None), seed=seed)
    train = TrainConfig(batch_size=batch_size, micro_batch=micro_batch, optimizer=optimizer, checkpointing=checkpointing)
    request = PlanRequest(adapter, train, personal)
    ranks = base_ranks(the_task, param_ratio, read_base_bundle(bundle) if bundle is not None else None)
    planner = task_planner(the_task, ranks)
    try:
        result = planner.plan(device, request, margin) if search else planner.estimate(device, request, margin)
    except PlanRefused as refused:
        print_plan(refused.closest, the_method, wire)
        raise
    print_plan(result, the_method, wire)
    if not result.fits:
        raise FedloraError(f"the requested configuration does not fit {device.name}; drop --no-search to let the planner find one that does")
