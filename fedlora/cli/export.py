"""``fedlora export``: a client's personalized model as a device bundle, a C header and a .tflite."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from fedlora.cli import options
from fedlora.terminal import console
from fedlora.cli.run import comparison_table, memory_table, read_key
from fedlora.errors import FedloraError
from fedlora.run_layout import safe_name


def export(
    run: Annotated[Path, typer.Option("--run", help="Folder of one finished run, e.g. runs/latest/fedit.")],
    client: Annotated[Optional[str], typer.Option("--client", help="The client to export, by name (e.g. stdlib:json).")] = None,
    partition: Annotated[Optional[int], typer.Option("--partition", help="The client to export, by partition index.")] = None,
    base_only: Annotated[bool, typer.Option("--base-only", help="Export the untouched INT8 base of the run (no adapters).")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output folder (default: <run>/export/<client or base>).")] = None,
    calibration: Annotated[str, typer.Option("--calibration", help="Calibrate activation ranges on the client's train split (client) or the public one (public).")] = "client",
    calibration_samples: Annotated[int, typer.Option("--calibration-samples", help="Examples (token windows or rows) to calibrate on.")] = 256,
    rounding: Annotated[str, typer.Option("--rounding", help="Requantization of the target kernels: double (TFLM and CMSIS-NN default) or single.")] = "double",
    sign_key: Annotated[Optional[Path], typer.Option("--sign-key", help="Ed25519 private key (PEM) to sign the bundle's manifest with.")] = None,
    reference: Annotated[bool, typer.Option("--reference/--no-reference", help="Store the test data and the torch model's answers in the bundle, for `fedlora run`.")] = True,
    name: Annotated[str, typer.Option("--name", help="C identifier for the header's symbols and the file names.")] = "fedlora_model",
    cache_dir: options.CacheDir = None,
    state_dir: Annotated[Optional[Path], typer.Option("--state-dir", help="Where the clients kept their state (default: <run>/../client-state/<run name>).")] = None,
    seed: options.Seed = 0,
) -> None:
    """Merge a client's adapters into the base, quantize with calibration, and write the device formats."""
    from fedlora.cli.common import require_training
    from fedlora.paths import existing_folder, writable_folder

    # --base-only with a client: the base, calibrated and scored on that client's data.
    choices = sum(x is not None for x in (client, partition))
    if not base_only and choices == 0:
        raise FedloraError("choose what to export: --client NAME, --partition N, or --base-only")
    if choices > 1:
        raise FedloraError("give --client or --partition, not both")
    existing_folder(run, "--run")
    if state_dir is not None:
        existing_folder(state_dir, "--state-dir")
    require_training("safetensors", "flatbuffers")
    from fedlora.export.personalized import ExportOptions, export_run

    who = client if client is not None else (f"partition-{partition}" if partition is not None else None)
    label = "base" if base_only and who is None else (f"base-{who}" if base_only else who)
    out = writable_folder(out if out is not None else run / "export" / safe_name(label), "--out")
    export_options = ExportOptions(
        out=out, calibration=calibration, calibration_samples=calibration_samples, rounding=rounding,
        sign_key_pem=read_key(sign_key, "--sign-key"), reference=reference, name=name, seed=seed,
    )
    result = export_run(run, export_options, client=client, partition=partition, base_only=base_only,
                        cache_dir=cache_dir, state_dir=state_dir)
    for note in result.notes:
        console.print(f"· {note}")
    files = Table(title="written")
    files.add_column("what")
    files.add_column("path")
    files.add_row("device bundle" + (" (signed)" if sign_key else ""), str(result.bundle_dir))
    files.add_row("C header (+ fedlora_fc.c/.h)", str(result.header))
    files.add_row(".tflite (one FULLY_CONNECTED chain per int8 part, batch 1)", str(result.tflite))
    console.print(files)
    console.print(memory_table(result.flash, result.peak_activation_bytes))
    if result.reference is not None:
        console.print(comparison_table(f"int8 runtime against torch on the {result.reference} ({result.examples:,} examples)",
                                       result.int8_metrics, result.torch_metrics, result.agreement, result.primary_metric))
    console.print(f"run it: fedlora run {result.bundle_dir}")
