"""``fedlora export``: a client's personalized model, quantized, in the device formats.

From a finished run and a client (or the untouched base): rebuild the torch model
(:mod:`.run_source`), merge every adapter into its factors (``[U | s·B]·[V ; A]``),
calibrate and quantize it (:mod:`.convert`), and write into ``out/``

``bundle/``
    the device bundle (:mod:`fedlora.device_runtime.bundle`), optionally signed, with the
    client's test data and the torch model's answers on it (``reference.safetensors``);
``c/<name>.h`` (+ ``fedlora_fc.c``, ``fedlora_fc.h``)
    the int8 FC chains — one per linear layer of the transformer, one for the whole MLP —
    for the portable C99 reference kernels;
``<name>.tflite``
    the same chains as FULLY_CONNECTED ops, side by side in one subgraph, batch 1
    (input/output ``i`` = chain ``i`` of the header), runnable by TFLM.

It then runs the int8 model on the reference data and reports top-1 agreement with the
torch model, the metric difference, the flash bytes and the peak activation RAM.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedlora import __version__
from fedlora.adapters import set_merged
from fedlora.device_runtime import C_SOURCE_DIR, Reference, RuntimeModel, write_c_model_header, write_device_bundle
from fedlora.device_runtime.evaluation import agreement, metrics, predict_logits
from fedlora.device_runtime.fixed_point import ROUNDING_MODES
from fedlora.device_runtime.signing import SignatureError, sign_manifest
from fedlora.errors import FedloraError
from fedlora.export.convert import WEIGHT_ROUNDINGS, to_device_model
from fedlora.export.run_source import choose_client, open_run, personalized_model
from fedlora.export.tflite import write_tflite_model
from fedlora.tasks.base import Task
from fedlora.tasks.datasets import Dataset

CALIBRATION_SOURCES = ("client", "public")
_BATCH = 64


@dataclass(frozen=True)
class ExportOptions:
    """How to export.

    out: folder for the bundle, the C header and the ``.tflite``.
    calibration: ``client`` (the client's train split) or ``public`` (the server's).
    calibration_samples: examples (token windows or rows) to calibrate on; fewer if the
        split is smaller.
    rounding: requantization of the C kernels the model targets, ``double`` (TFLM and
        CMSIS-NN default) or ``single``.
    sign_key_pem: Ed25519 private key (PEM) to sign the manifest with.
    reference: store test data and the torch answers in the bundle (for ``fedlora run``).
    reference_limit: at most this many test examples in the reference.
    name: C identifier that prefixes the header's symbols and names the files.
    equalize: fold input ranges into layer norms, balance intermediates and equalize
        outputs before quantizing (see :mod:`.convert`).
    weight_rounding: ``gptq`` (round weights to minimize each FC's output error on the
        calibration data) or ``nearest``.
    seed: seeds the choice of calibration examples.
    """

    out: Path
    calibration: str = "client"
    calibration_samples: int = 256
    rounding: str = "double"
    sign_key_pem: bytes | None = None
    reference: bool = True
    reference_limit: int = 1024
    name: str = "fedlora_model"
    equalize: bool = True
    weight_rounding: str = "gptq"
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if self.calibration not in CALIBRATION_SOURCES:
            raise FedloraError(f"--calibration must be one of {', '.join(CALIBRATION_SOURCES)}, got {self.calibration!r}")
        if self.calibration_samples < 1:
            raise FedloraError(f"--calibration-samples must be ≥ 1, got {self.calibration_samples}")
        if self.rounding not in ROUNDING_MODES:
            raise FedloraError(f"--rounding must be one of {', '.join(ROUNDING_MODES)}, got {self.rounding!r}")
        if self.weight_rounding not in WEIGHT_ROUNDINGS:
            raise FedloraError(f"weight rounding must be one of {', '.join(WEIGHT_ROUNDINGS)}, got {self.weight_rounding!r}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.name):
            raise FedloraError(f"--name must be a C identifier (letters, digits, _), got {self.name!r}")
        if self.sign_key_pem is not None:
            try:
                sign_manifest(b"probe", self.sign_key_pem)  # fail now, not after the work
            except SignatureError as exc:
                raise FedloraError(f"--sign-key: {exc}") from exc


@dataclass
class ExportResult:
    model: RuntimeModel
    bundle_dir: Path
    header: Path
    tflite: Path
    flash: dict[str, int]
    peak_activation_bytes: int
    reference: str | None = None  # what the comparison ran on
    examples: int = 0
    torch_metrics: dict[str, float] = field(default_factory=dict)
    int8_metrics: dict[str, float] = field(default_factory=dict)
    agreement: float | None = None
    primary_metric: str = "accuracy"
    notes: list[str] = field(default_factory=list)


def export_run(
    run_dir: str | Path,
    options: ExportOptions,
    *,
    client: str | None = None,
    partition: int | None = None,
    base_only: bool = False,
    cache_dir: str | Path | None = None,
    state_dir: str | Path | None = None,
) -> ExportResult:
    """Export a client's personalized model (or, with ``base_only``, the base) of a run."""
    if not base_only and client is None and partition is None:
        raise FedloraError("choose what to export: --client NAME, --partition N, or --base-only")
    source = open_run(run_dir, cache_dir)
    choose_client(source, client, partition)
    if options.calibration == "client" and source.client_index is None:
        options = replace(options, calibration="public")
        source.notes.append("no client chosen: calibrating on the public data")
    model = personalized_model(source, base_only, state_dir)
    client_data = source.client_data
    public = source.task.public() if options.calibration == "public" or client_data is None else None
    calibration = client_data.train if options.calibration == "client" else public.train
    test = client_data.test if client_data is not None else public.test
    provenance = {
        "run": source.settings.name,
        "run_dir": str(Path(run_dir).resolve()),
        "method": source.settings.method,
        "personal": source.settings.personal,
        "client": source.client_name,
        "partition": source.client_index,
        "base_id": source.bundle.id,
        "base_only": base_only,
        "exported_by": f"fedlora {__version__}",
    }
    where = f"client {source.client_name}" if client_data is not None else "public"
    result = export_model(model, source.task, options, calibration, test, provenance, f"{where} test split")
    result.notes = source.notes + result.notes
    return result


def export_model(
    model: nn.Module,
    task: Task,
    options: ExportOptions,
    calibration: Dataset,
    test: Dataset | None,
    provenance: dict[str, Any],
    test_description: str = "test split",
) -> ExportResult:
    """Merge, calibrate, quantize and write ``model`` (a torch model of ``task``)."""
    set_merged(model, True)
    model.eval()
    samples = min(options.calibration_samples, len(calibration))
    device_model = to_device_model(model, _calibration_batches(calibration, samples, options.seed),
                                   options.rounding, options.equalize, options.weight_rounding)
    provenance = {
        **provenance,
        "calibration": {"data": f"{options.calibration} train split", "examples": samples,
                        "equalization": "input ranges folded into layer norms; balanced, equalized intermediates; "
                                        "per-channel output affine" if options.equalize else "none",
                        "weight_rounding": options.weight_rounding},
    }
    result = ExportResult(
        device_model, options.out / "bundle", options.out / "c" / f"{options.name}.h",
        options.out / f"{options.name}.tflite", device_model.flash_bytes(),
        device_model.peak_activation_bytes(1), primary_metric=task.primary_metric,
    )
    reference = None
    if test is not None:
        inputs, targets, torch_logits = _reference_data(model, test, options.reference_limit)
        int8_logits = predict_logits(device_model, inputs, _BATCH)
        torch_predictions = torch_logits.argmax(-1).astype(np.int32)
        result.reference, result.examples = test_description, len(inputs)
        result.torch_metrics, result.int8_metrics = metrics(torch_logits, targets), metrics(int8_logits, targets)
        result.agreement = agreement(int8_logits.argmax(-1), torch_predictions)
        if options.reference:
            reference = Reference(inputs, targets, torch_predictions, result.torch_metrics, test_description)
    task_entry = {"name": task.name, "config": task.config, "fingerprint": task.fingerprint,
                  "primary_metric": task.primary_metric}
    write_device_bundle(result.bundle_dir, device_model, task=task_entry, provenance=provenance,
                        reference=reference, sign_key_pem=options.sign_key_pem)
    result.header.parent.mkdir(parents=True, exist_ok=True)
    write_c_model_header(device_model.int8_chains(), result.header, options.name)
    for source in ("fedlora_fc.c", "fedlora_fc.h"):
        shutil.copyfile(C_SOURCE_DIR / source, result.header.parent / source)
    write_tflite_model(device_model.int8_chains(), result.tflite, batch=1,
                       description=f"fedlora {task.name} int8 chains: {', '.join(device_model.int8_chains())}")
    return result


def _calibration_batches(data: Dataset, samples: int, seed: int) -> Iterator[torch.Tensor]:
    """``samples`` examples of ``data``: all of it in order if it is that small, else a
    seeded random draw."""
    if samples >= len(data):
        for inputs, _ in data.eval_batches(_BATCH):
            yield inputs
        return
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, samples, _BATCH):
        inputs, _ = data.sample(min(_BATCH, samples - start), generator)
        yield inputs


def _reference_data(model: nn.Module, test: Dataset, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``limit`` test examples, their targets and the torch model's logits."""
    inputs, targets, logits, count = [], [], [], 0
    with torch.no_grad():
        for x, y in test.eval_batches(_BATCH):
            x, y = x[: limit - count], y[: limit - count]
            inputs.append(x.numpy())
            targets.append(y.numpy())
            logits.append(model(x).numpy())
            count += len(x)
            if count >= limit:
                break
    x = np.concatenate(inputs)
    x = x.astype(np.int32) if x.dtype.kind in "iu" else x.astype(np.float32)
    return x, np.concatenate(targets).astype(np.int32), np.concatenate(logits).astype(np.float32)

