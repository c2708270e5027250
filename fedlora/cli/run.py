"""``fedlora run``: run a device bundle with the numpy int8 runtime and score it.

Needs numpy only (the base install) when given a ``.npy`` file of inputs or when the
bundle carries its reference test data; scoring a bundle without stored test data loads
the task, which needs torch. Nothing here imports torch at module level.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer
from rich.table import Table

from fedlora.terminal import console, err_console
from fedlora.errors import FedloraError

BUNDLE_HELP = "Device bundle folder written by `fedlora export` (the one holding manifest.json)."
#: exit status of a run whose bundle's signature was not verified (2 is an error)
UNVERIFIED_EXIT = 4


def read_key(path: Path | None, option: str) -> bytes | None:
    """The bytes of a PEM key file given to ``option``, or None."""
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FedloraError(f"{option} {path}: cannot read the key file ({exc.strerror})") from exc


def load_bundle(path: Path, public_key: Path | None = None):
    """Load and check a device bundle; problems become FedloraError."""
    from fedlora.device_runtime import DeviceBundleError, load_device_bundle

    try:
        return load_device_bundle(path, read_key(public_key, "--public-key"))
    except DeviceBundleError as exc:
        raise FedloraError(str(exc)) from exc


def load_npy(path: Path, option: str) -> np.ndarray:
    """An array from a ``.npy`` file, never unpickling."""
    try:
        return np.load(path, allow_pickle=False)
    except OSError as exc:
        raise FedloraError(f"{option} {path}: cannot read it ({exc})") from exc
    except ValueError as exc:
        raise FedloraError(f"{option} {path}: not a plain .npy array ({exc}); save it with numpy.save, no objects") from exc


def comparison_table(title: str, int8: dict[str, float], torch: dict[str, float] | None, agreement: float | None,
                     primary: str) -> Table:
    """Metrics of the int8 model, of the torch model, their difference, and top-1 agreement."""
    table = Table(title=title)
    for column in ("metric", "int8 runtime", "torch", "difference"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name in (primary, *sorted(set(int8) - {primary})):
        reference = None if torch is None else torch.get(name)
        table.add_row(
            name + (" (primary)" if name == primary else ""),
            f"{int8[name]:.4f}",
            "—" if reference is None else f"{reference:.4f}",
            "—" if reference is None else f"{int8[name] - reference:+.4f}",
        )
    table.add_row("top-1 agreement with torch", "—" if agreement is None else f"{agreement:.2%}", "", "")
    return table


def memory_table(flash: dict[str, int], peak: int) -> Table:
    table = Table(title="device memory")
    table.add_column("what")
    table.add_column("bytes", justify="right")
    labels = {"weights": "flash: int8 weights", "biases": "flash: int32 biases",
              "quant_params": "flash: quantization params (multipliers, shifts, offsets)",
              "float32_tensors": "flash: float32 tensors (embeddings, norms, channel affines)",
              "total": "flash: total"}
    for key, label in labels.items():
        table.add_row(label, f"{flash[key]:,}", style="bold" if key == "total" else None)
    table.add_row("RAM: peak activations (batch 1)", f"{peak:,}", style="bold")
    return table


def run(
    bundle: Annotated[Path, typer.Argument(help=BUNDLE_HELP)],
    inputs: Annotated[Optional[Path], typer.Option("--inputs", help="A .npy file of inputs: token ids (N, T) for textlm, features (N, F) for the MLP tasks (default: the bundle's test data).")] = None,
    targets: Annotated[Optional[Path], typer.Option("--targets", help="A .npy file of the targets of --inputs, to score them.")] = None,
    predictions: Annotated[Optional[Path], typer.Option("--predictions", help="Write the top-1 predictions here as .npy.")] = None,
    public_key: Annotated[
        Optional[Path],
        typer.Option("--public-key", envvar="FEDLORA_PUBLIC_KEY", help="Ed25519 public key (PEM, `fedlora keys generate`): require manifest.sig and verify it."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Examples per runtime call.")] = 64,
    unverified: Annotated[
        bool, typer.Option("--unverified", help=f"Accept a bundle whose signature is not verified (no --public-key): exit 0, not {UNVERIFIED_EXIT}.")
    ] = False,
) -> None:
    """Run a device bundle on its client's test data (or a .npy of inputs); report the metric and agreement with torch."""
    from fedlora.device_runtime.evaluation import agreement, metrics, predict_logits

    if targets is not None and inputs is None:
        raise FedloraError("--targets scores --inputs; give --inputs too")
    loaded = load_bundle(bundle, public_key)
    model, reference = loaded.model, loaded.reference
    torch_predictions = torch_metrics = None
    if inputs is not None:
        data = load_npy(inputs, "--inputs")
        try:
            data = model.check_inputs(data)
        except ValueError as exc:
            raise FedloraError(f"--inputs {inputs}: {exc}") from exc
        labels = None if targets is None else _targets(load_npy(targets, "--targets"), data, model, targets)
        description = str(inputs)
        if reference is not None:
            torch_predictions = _reference_answers(data, reference)
            if torch_predictions is not None and _same(data, reference.inputs):
                torch_metrics = reference.torch_metrics
    elif reference is not None:
        data, labels, description = reference.inputs, reference.targets, reference.description
        torch_predictions, torch_metrics = reference.torch_predictions, reference.torch_metrics
    else:
        data, labels, description = _task_test_data(loaded.manifest)

    started = time.perf_counter()
    logits = predict_logits(model, data, batch_size)
    seconds = time.perf_counter() - started
    top1 = logits.argmax(-1)
    if predictions is not None:
        np.save(predictions, top1.astype(np.int32), allow_pickle=False)

    primary = loaded.manifest["task"].get("primary_metric", "accuracy")
    provenance = loaded.manifest["provenance"]
    who = provenance.get("client") or ("base" if provenance.get("base_only") else "global model")
    console.print(f"bundle {loaded.id[:16]}… ({loaded.manifest['architecture']['name']}, {who}, "
                  f"signature {loaded.signature}); {len(data):,} examples from {description} in {seconds:.2f} s")
    agree = None if torch_predictions is None else agreement(top1, torch_predictions)
    if torch_metrics is None and torch_predictions is not None and labels is not None:
        torch_metrics = {"accuracy": agreement(torch_predictions, labels)}  # what its answers give
    if labels is not None:
        console.print(comparison_table("int8 runtime against the torch model it was exported from",
                                       metrics(logits, labels), torch_metrics, agree, primary))
    elif agree is not None:
        console.print(f"top-1 agreement with torch: {agree:.2%}")
    if torch_predictions is None:
        console.print("agreement with torch: n/a (the bundle's torch answers cover its stored test inputs only)")
    console.print(memory_table(model.flash_bytes(), model.peak_activation_bytes(1)))
    if loaded.signature != "verified":
        # Nothing proves who made this bundle: say so where it cannot be missed.
        err_console.print(
            f"[bold red]signature not verified[/] ({loaded.signature}): nothing proves who made {bundle}; give the exporter's "
            "public key with --public-key or FEDLORA_PUBLIC_KEY" + ("" if unverified else f" (--unverified accepts it; exit {UNVERIFIED_EXIT})"),
            soft_wrap=True,
        )
        if not unverified:
            raise typer.Exit(UNVERIFIED_EXIT)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))


def _reference_answers(data: np.ndarray, reference) -> np.ndarray | None:
    """The torch model's predictions for ``data`` when every row of it is a row of the
    bundle's reference inputs (e.g. a slice of them), else None."""
    stored = reference.inputs
    if data.shape[1:] != stored.shape[1:]:
        return None
    row_of = {row.tobytes(): i for i, row in enumerate(np.ascontiguousarray(stored.astype(data.dtype)))}
    rows = [row_of.get(row.tobytes()) for row in np.ascontiguousarray(data)]
    if any(i is None for i in rows):
        return None
    return reference.torch_predictions[np.asarray(rows, dtype=np.int64)]


def _targets(labels: np.ndarray, data: np.ndarray, model, path: Path) -> np.ndarray:
    expected = data.shape if model.input_kind == "tokens" else data.shape[:1]
    classes = model.linears["head"].out_features
    if labels.dtype.kind not in "iu" or labels.shape != expected:
        raise FedloraError(f"--targets {path}: must be integers of shape {expected}, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise FedloraError(f"--targets {path}: values must lie in [0, {classes})")
    return labels


def _task_test_data(manifest: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, str]:
    """The exported client's test split, rebuilt from the task (needs torch)."""
    from fedlora.extras import require

    require("torch")
    from fedlora.tasks.registry import load_task

    task_entry, provenance = manifest["task"], manifest["provenance"]
    config = dict(task_entry.get("config", {}))
    options = {k: v for k, v in config.items() if k not in ("task", "num_clients", "seed")}
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items() if v is not None}
    task = load_task(task_entry["name"], num_clients=config.get("num_clients"), seed=config.get("seed", 0), **options)
    if task.fingerprint != task_entry.get("fingerprint"):
        raise FedloraError(
            f"the data of task {task.name!r} here differs from the data the bundle was exported with; "
            "run with --inputs (and --targets) instead"
        )
    partition = provenance.get("partition")
    data = task.public().test if partition is None else task.client(partition).test
    inputs, labels = zip(*data.eval_batches(256))
    import torch

    x = torch.cat(inputs).numpy()
    where = "public" if partition is None else f"client {provenance.get('client')}"
    return x, torch.cat(labels).numpy(), f"{where} test split"
