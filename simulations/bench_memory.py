"""Benchmark: does local training fit each device, and is the planner right about it?

For every device profile, on the default task and its real INT8 base:

1. plan the federation's default request (the settings' adapters, rank, batch, optimizer)
   for the device — the request itself, the best configuration that fits, or a refusal
   (then the smallest configuration is measured anyway, to show what it would take);
2. run two steps of fedlora's trainer with that plan and measure the second
   (:func:`fedlora.client.memory_probe.measure_training`);
3. compare the planner's prediction of what the torch trainer allocates (adapters,
   gradients, optimizer state, batch, activations, temporaries) with the measurement;
4. size the update each client would send (int8 wire format, plus Flower's framing) and
   its airtime: on the device's own uplink and against LoRaWAN fair use (about 2 KB).

A what-if closes the report: the same model and data with shorter training windows,
for the microcontrollers the default window does not fit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from fedlora.terminal import console
from fedlora.links import airtime
from fedlora.client.memory_probe import Measurement, measure_training
from fedlora.client.device_plan import planned_model, request_from_settings, update_message_bytes
from fedlora.client.plan_search import Plan, Planner, PlanRefused, PlanRequest
from fedlora.client.profiles import DeviceProfile, builtin_profiles, format_bytes, load_link, load_profile
from fedlora.methods import get_method
from fedlora.participant import base_model, task_of
from fedlora.server.federation import base_for
from fedlora.settings import FederationSettings
from fedlora.tasks.base import manual_seed_generator
from fedlora.tasks.datasets import Dataset, TokenStream

LORAWAN = "lorawan-eu868-sf7"
#: shorter training windows tried for devices the task's own window does not fit
WHAT_IF_WINDOWS = (48, 32)


@dataclass
class Row:
    profile: str
    kind: str
    usable_ram: int
    window: int
    verdict: str  # "fits", "changed", "refused"
    plan: str
    changes: list[str]
    reason: str | None
    device_bytes: int  # predicted RAM of the training step on the device
    predicted_bytes: int  # predicted torch allocation (comparable with measured)
    measured_bytes: int
    measured_peak_site: str
    update_bytes: int  # raw int8 payload
    message_bytes: int  # the Flower reply carrying it
    uplink: str
    uplink_wall_s: float
    uplink_ok: bool
    lorawan_airtime_s: float
    lorawan_ok: bool

    @property
    def error(self) -> float:
        return self.predicted_bytes / self.measured_bytes - 1


def _plan_or_closest(planner: Planner, profile: DeviceProfile, request: PlanRequest) -> tuple[Plan, str, str | None]:
    try:
        plan = planner.plan(profile, request)
    except PlanRefused as refused:
        return refused.closest, "refused", str(refused)
    return plan, "changed" if plan.changes else "fits", None


def _row(planner: Planner, profile: DeviceProfile, request: PlanRequest, data: Dataset, window: int, settings, bundle, task) -> Row:
    plan, verdict, reason = _plan_or_closest(planner, profile, request)
    model = planned_model(base_model(bundle, task), plan)
    measured: Measurement = measure_training(model, data, plan.train_config, seed=settings.seed)
    travels = get_method(settings.method).travels
    payload, message = plan.update_bytes(travels, "int8"), update_message_bytes(plan, travels, "int8")
    own, lora = airtime(message, profile.uplink), airtime(message, load_link(LORAWAN))
    return Row(
        profile=profile.name, kind=profile.kind, usable_ram=profile.usable_ram, window=window, verdict=verdict,
        plan=short_plan(plan), changes=[c.describe() for c in plan.changes], reason=reason,
        device_bytes=plan.breakdown.training_bytes, predicted_bytes=plan.breakdown.host_bytes,
        measured_bytes=measured.peak_bytes, measured_peak_site=measured.peak_site, update_bytes=payload, message_bytes=message,
        uplink=profile.uplink.name, uplink_wall_s=own.wall_s, uplink_ok=own.fits,
        lorawan_airtime_s=lora.airtime_s, lorawan_ok=lora.fits,
    )  # fmt: skip


def run(settings: FederationSettings, profiles: list[str] | None = None, windows=WHAT_IF_WINDOWS, out: Path | None = None) -> list[Row]:
    """Plan and measure every profile on ``settings``' task and base; what-ifs with
    shorter windows for the microcontrollers that the task's own window does not fit."""
    task = task_of(settings)
    bundle = base_for(settings).bundle
    model = base_model(bundle, task)
    data = task.client(0).train
    request = request_from_settings(settings, task)
    chosen = [load_profile(name) for name in profiles] if profiles else list(builtin_profiles().values())
    context = getattr(data, "context", None)
    planner = Planner(model, data.sample(2, manual_seed_generator(settings.seed)))
    rows = [_row(planner, p, request, data, context or 0, settings, bundle, task) for p in chosen]
    if isinstance(data, TokenStream):
        for window in windows:
            short = TokenStream(data.tokens, window)
            short_planner = Planner(model, short.sample(2, manual_seed_generator(settings.seed)))
            rows += [
                _row(short_planner, p, request, short, window, settings, bundle, task)
                for p in chosen
                if p.kind == "mcu" and any(r.profile == p.name and r.window == context and r.verdict == "refused" for r in rows)
            ]
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"task": task.config, "request": repr(request), "rows": [r.__dict__ | {"error": r.error} for r in rows]}, indent=2))
    return rows


def short_plan(plan: Plan) -> str:
    """``2L r4 mb1×16 adam ckpt``: adapted layers, rank, micro-batch × passes, optimizer."""
    passes = plan.train_config.accumulation
    return (
        f"{len(plan.adapted_layers)}L r{plan.rank} mb{plan.micro_batch}" + (f"×{passes}" if passes > 1 else "")
        + f" {plan.optimizer}" + (" ckpt" if plan.checkpointing else "")
    )  # fmt: skip


def results_table(rows: list[Row]) -> Table:
    table = Table(title="one local training step per device (textlm, real INT8 base): plan, predicted vs measured")
    columns = ("profile", "window", "usable RAM", "verdict", "plan", "device RAM", "predicted", "measured", "error", "update raw/msg", "own uplink", "LoRaWAN")
    for column in columns:
        table.add_column(column, justify="left" if column in ("profile", "verdict", "plan", "own uplink") else "right")
    for r in rows:
        style = {"fits": "green", "changed": "yellow", "refused": "red"}[r.verdict]
        table.add_row(
            r.profile, str(r.window), format_bytes(r.usable_ram), f"[{style}]{r.verdict}[/]", r.plan,
            format_bytes(r.device_bytes), format_bytes(r.predicted_bytes), format_bytes(r.measured_bytes), f"{r.error:+.2%}",
            f"{r.update_bytes:,} / {r.message_bytes:,} B", f"{r.uplink} {r.uplink_wall_s:.2f} s" + ("" if r.uplink_ok else " ✗"),
            f"{r.lorawan_airtime_s:.1f} s " + ("✓" if r.lorawan_ok else "✗"),
        )  # fmt: skip
    return table


def print_results(rows: list[Row]) -> None:
    console.print(results_table(rows))
    worst = max(rows, key=lambda r: abs(r.error))
    console.print(f"planner error vs measured: worst {worst.error:+.2%} ({worst.profile}, window {worst.window}); goal within ±10%")
    console.print(
        "[dim]device RAM: the planner's prediction for the board (torch's allocation + one dequantized layer, + the base "
        "where it lives in RAM; runtime reserve not included). predicted/measured: what fedlora's torch trainer allocates "
        "besides the frozen base. update: raw int8 payload / the Flower reply that carries it (airtime is of the reply); "
        "LoRaWAN: airtime at SF7, ✓ = within the 2,048 B fair-use budget per update.[/]"
    )
    console.print("[dim]plan: adapted layers (from the top), rank, micro-batch × passes per step, optimizer, ckpt = activation checkpointing.[/]")
    explained = set()
    for r in rows:
        if r.reason and r.window not in explained:  # the first refusal per window in full; the table has the rest
            explained.add(r.window)
            console.print(f"[red]{r.profile}[/] (window {r.window}): {r.reason}")
        elif r.changes:
            console.print(f"{r.profile} (window {r.window}): " + "; ".join(r.changes))
