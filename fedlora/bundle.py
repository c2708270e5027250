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
No pickle anywhere: safetensors and JSON only.
"""

from __future__ import annotations

import hashlib
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
from fedlora.device_runtime.bundle import write_atomically
from fedlora.device_runtime.quantization import QMAX, dequantize_symmetric
from fedlora.errors import FedloraError
from fedlora.factorize import LayerFactorization, factorize_like
from fedlora.quantize import FACTORS
from fedlora.tasks.base import Task

FORMAT = "fedlora-base/1"
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
        "files": {WEIGHTS: {"sha256": sha256_hex(weights), "bytes": len(weights)}},
    }
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode()
    write_atomically(directory, {WEIGHTS: weights, MANIFEST: manifest_bytes})
    return BaseBundle(directory, manifest, sha256_hex(manifest_bytes))


def _parse_manifest(manifest_bytes: bytes, where: str) -> dict[str, Any]:
    try:
        manifest = json.loads(manifest_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FedloraError(f"{where}: manifest.json is not valid JSON ({exc}); the bundle is corrupted") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise FedloraError(f"{where}: not a fedlora base bundle (format {found!r}, expected {FORMAT!r})")
    for key in ("task", "layers", "files", "quantization"):
        if key not in manifest:
            raise FedloraError(f"{where}: manifest.json lacks {key!r}; the bundle is corrupted")
    return manifest


def _verify_files(manifest: dict[str, Any], files: dict[str, bytes], where: str) -> None:
    for name, expected in manifest["files"].items():
        if name not in files:
            raise FedloraError(f"{where}: file {name!r} listed in the manifest is missing")
        actual = sha256_hex(files[name])
        if actual != expected["sha256"]:
            raise FedloraError(
                f"{where}: {name} has SHA-256 {actual[:16]}…, the manifest says {expected['sha256'][:16]}…; "
                "the bundle is corrupted or was tampered with. Delete it and fetch or rebuild it."
            )


def read_base_bundle(directory: str | os.PathLike, expected_id: str | None = None) -> BaseBundle:
    """Open and verify a bundle on disk (manifest, every file hash, and the id if given)."""
    directory = Path(directory)
    if not (directory / MANIFEST).is_file():
        raise FedloraError(f"{directory} is not a base bundle: it has no {MANIFEST}")
    manifest_bytes = (directory / MANIFEST).read_bytes()
    bundle_id = sha256_hex(manifest_bytes)
    if expected_id is not None and bundle_id != expected_id:
        raise FedloraError(f"{directory}: bundle id {bundle_id[:16]}… is not the expected {expected_id[:16]}…")
    manifest = _parse_manifest(manifest_bytes, str(directory))
    files = {name: (directory / name).read_bytes() for name in manifest["files"] if (directory / name).is_file()}
    _verify_files(manifest, files, str(directory))
    return BaseBundle(directory, manifest, bundle_id)


def install_bundle(files: dict[str, bytes], expected_id: str, cache_dir: Path) -> BaseBundle:
    """Verify bundle files received over the wire and store them under ``cache_dir/<id>``.

    Nothing is written unless every check passes; an existing verified copy is reused.
    """
    if MANIFEST not in files:
        raise FedloraError(f"received bundle has no {MANIFEST}")
    if sha256_hex(files[MANIFEST]) != expected_id:
        raise FedloraError("received bundle's manifest does not hash to the announced bundle id; refusing it")
    manifest = _parse_manifest(files[MANIFEST], f"bundle {expected_id[:12]}")
    _verify_files(manifest, files, f"bundle {expected_id[:12]}")
    directory = cache_dir / expected_id
    if not (directory / MANIFEST).is_file():
        write_atomically(directory, {name: files[name] for name in [MANIFEST, *manifest["files"]]})
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
