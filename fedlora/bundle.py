"""The base-model bundle: the frozen INT8 factorized base every client downloads once.

A bundle is a directory of two files:

``weights.safetensors``
    factorized layers as INT8 factors with per-row scales (``<layer>.<u|v>.q``,
    ``<layer>.<u|v>.scale``), every other tensor of the model in float32 under its
    ``state_dict`` name.
``manifest.json``
    format, task (name, config, corpus fingerprint), the factorized layers (shapes,
    ranks, reconstruction errors), quantization scheme, how it was made, metrics, and
    the SHA-256 and size of every other file.

The bundle's id is the SHA-256 of ``manifest.json``. Since the manifest pins every other
file's hash, the id pins the whole bundle: a client that knows the id can verify any copy.
Reading or installing a bundle checks every file's size and hash, and that nothing is
missing or unlisted, with the verifier the device bundle uses too
(:mod:`fedlora.device_runtime.manifest`).
No pickle anywhere: safetensors and JSON only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors
from torch import nn

from fedlora import __version__
from fedlora.device_runtime.manifest import (
    MANIFEST,
    ManifestError,
    WrongFormat,
    file_entries,
    parse_manifest,
    read_files,
    sha256_hex,
    verify_files,
    write_atomically,
)
from fedlora.device_runtime.quantization import QMAX, dequantize_symmetric
from fedlora.errors import FedloraError
from fedlora.factorize import LayerFactorization, factorize_like
from fedlora.quantize import FACTORS
from fedlora.tasks.base import Task

FORMAT = "fedlora-base/1"
WEIGHTS = "weights.safetensors"
_REQUIRED_KEYS = ("task", "layers", "files", "quantization")
_FIX = "the bundle is corrupted or was tampered with: delete it and fetch or rebuild it"


@dataclass(frozen=True)
class BaseBundle:
    path: Path
    manifest: dict[str, Any]
    id: str  # SHA-256 of manifest.json

    @property
    def ranks(self) -> dict[str, int]:
        return {layer["name"]: layer["rank"] for layer in self.manifest["layers"]}

    def files(self) -> dict[str, bytes]:
        """Every file of the bundle by name, for sending it over the wire."""
        return {name: (self.path / name).read_bytes() for name in [MANIFEST, *self.manifest["files"]]}

    @property
    def size_bytes(self) -> int:
        return (self.path / MANIFEST).stat().st_size + sum(f["bytes"] for f in self.manifest["files"].values())


def write_base_bundle(
    directory: Path,
    model: nn.Module,
    int8_tensors: dict[str, np.ndarray],
    task: Task,
    layers: list[LayerFactorization],
    provenance: dict[str, Any],
) -> BaseBundle:
    """Write ``model`` (already quantized by ``quantize_base``) as a bundle in ``directory``."""
    factor_keys = {f"{layer.name}.{factor}" for layer in layers for factor in FACTORS}
    tensors = {
        key: value.detach().float().cpu().numpy()
        for key, value in model.state_dict().items()
        if key not in factor_keys
    }
    tensors.update(int8_tensors)
    # safetensors writes the raw buffer: a Fortran-ordered array (SVD factors often are)
    # would come back transposed, so every tensor is made C-contiguous first.
    weights = save_safetensors({key: np.ascontiguousarray(value) for key, value in tensors.items()})
    manifest = {
        "format": FORMAT,
        "fedlora_version": __version__,
        "task": {"name": task.name, "config": task.config, "fingerprint": task.fingerprint},
        "layers": [
            {
                "name": layer.name,
                "out_features": layer.out_features,
                "in_features": layer.in_features,
                "rank": layer.rank,
                "relative_error": layer.relative_error,
            }
            for layer in layers
        ],
        "quantization": {"scheme": "int8-symmetric-per-row", "factors": list(FACTORS), "qmax": QMAX},
        "provenance": provenance,
        "files": file_entries({WEIGHTS: weights}),
    }
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode()
    write_atomically(directory, {WEIGHTS: weights, MANIFEST: manifest_bytes})
    return BaseBundle(directory, manifest, sha256_hex(manifest_bytes))


def _parse_manifest(manifest_bytes: bytes, where: str) -> dict[str, Any]:
    try:
        manifest = parse_manifest(manifest_bytes, FORMAT)
    except WrongFormat as exc:
        raise FedloraError(f"{where}: not a fedlora base bundle (format {exc.found!r}, expected {FORMAT!r})") from exc
    except ManifestError as exc:
        raise FedloraError(f"{where}: {exc}; {_FIX}") from exc
    missing = [key for key in _REQUIRED_KEYS if key not in manifest]
    if missing:
        raise FedloraError(f"{where}: {MANIFEST} lacks {', '.join(map(repr, missing))}; {_FIX}")
    return manifest


def read_base_bundle(directory: str | os.PathLike, expected_id: str | None = None) -> BaseBundle:
    """Open and verify a bundle on disk: its manifest, every file's size and hash, nothing
    missing or unlisted, and the id if given."""
    directory = Path(directory)
    if not (directory / MANIFEST).is_file():
        raise FedloraError(f"{directory} is not a base bundle: it has no {MANIFEST}")
    manifest_bytes = (directory / MANIFEST).read_bytes()
    bundle_id = sha256_hex(manifest_bytes)
    if expected_id is not None and bundle_id != expected_id:
        raise FedloraError(f"{directory}: bundle id {bundle_id[:16]}… is not the expected {expected_id[:16]}…")
    manifest = _parse_manifest(manifest_bytes, str(directory))
    try:
        read_files(directory, manifest)
    except ManifestError as exc:
        raise FedloraError(f"{directory}: {exc}; {_FIX}") from exc
    return BaseBundle(directory, manifest, bundle_id)


def install_bundle(files: dict[str, bytes], expected_id: str, cache_dir: Path) -> BaseBundle:
    """Verify bundle files received over the wire and store them under ``cache_dir/<id>``.

    Nothing is written unless every check passes (the same as :func:`read_base_bundle`'s);
    an existing verified copy is reused.
    """
    if MANIFEST not in files:
        raise FedloraError(f"received bundle has no {MANIFEST}")
    if sha256_hex(files[MANIFEST]) != expected_id:
        raise FedloraError("received bundle's manifest does not hash to the announced bundle id; refusing it")
    where = f"bundle {expected_id[:12]}"
    manifest = _parse_manifest(files[MANIFEST], where)
    try:
        verify_files(manifest, files)
    except ManifestError as exc:
        raise FedloraError(f"{where}: {exc}; {_FIX}") from exc
    directory = cache_dir / expected_id
    contents = {name: files[name] for name in [MANIFEST, *manifest["files"]]}
    # Content-addressed: a copy another client installed first (simulated clients share a
    # cache) is as good as this one once verified, and is never removed under its readers;
    # a damaged copy is replaced by the verified files just received.
    if not write_atomically(directory, contents, overwrite=False):
        try:
            return read_base_bundle(directory, expected_id=expected_id)
        except FedloraError:
            write_atomically(directory, contents)
    return BaseBundle(directory, manifest, expected_id)


def load_base_model(bundle: BaseBundle, task: Task) -> nn.Module:
    """The frozen, dequantized INT8 base as a torch model of ``task``."""
    recorded = bundle.manifest["task"]
    if recorded["name"] != task.name:
        raise FedloraError(f"bundle {bundle.path} was built for task {recorded['name']!r}, not {task.name!r}")
    model = task.build_model()
    factorize_like(model, bundle.ranks)
    tensors = load_safetensors((bundle.path / WEIGHTS).read_bytes())
    state = {key: torch.from_numpy(value.copy()) for key, value in tensors.items() if not key.endswith((".q", ".scale"))}
    for name in bundle.ranks:
        for factor in FACTORS:
            q, scale = tensors[f"{name}.{factor}.q"], tensors[f"{name}.{factor}.scale"]
            if q.dtype != np.int8:
                raise FedloraError(f"bundle {bundle.path}: {name}.{factor}.q is {q.dtype}, expected int8")
            state[f"{name}.{factor}"] = torch.from_numpy(dequantize_symmetric(q, scale))
    expected = model.state_dict()
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
        raise FedloraError(
            f"bundle {bundle.path} does not fit task {task.name!r} as configured now "
            "(different model shape); rebuild the base with the same task options"
        )
    model.load_state_dict(state)
    return model.requires_grad_(False).eval()
