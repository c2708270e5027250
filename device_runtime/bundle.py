"""The device bundle: the personalized int8 model as it lands on a device.

A folder of

``manifest.json``
    ``format`` (``fedlora-device/1``); ``architecture`` (name and hyper-parameters);
    ``rounding`` of the requantization; per linear layer (``linears``) the quantization of
    each of its int8 FCs — input and output scale and zero point, fused activation,
    whether it has a bias and per-channel weight scales — and whether its output has a
    per-channel float affine; the float32 tensors (``floats``); the ``task`` (name,
    config, fingerprint, primary metric); ``provenance`` (run, client, base id, method,
    calibration); ``files`` — SHA-256 and size of every other file; optionally
    ``reference`` (what ``reference.safetensors`` holds and the torch model's metrics).
``weights.safetensors``
    per FC ``<layer>/fc<i>/{weights (int8), weight_scale (float32), bias (int32),
    output_multiplier (int32), output_shift (int32)}`` (``fc0`` is the first FC a layer
    runs: ``V`` of a factorized layer, the only one of a dense layer); per affine layer
    ``<layer>/channel_{scale,offset}`` (float32); the float32 tensors by model name.
``reference.safetensors`` (optional, host-side)
    ``inputs``, ``targets`` and ``torch_predictions`` of the test data the bundle was
    exported with, so ``fedlora run`` can report agreement with the torch model.
``manifest.sig`` (optional)
    Ed25519 signature of ``manifest.json``'s bytes (:mod:`.signing`).

:func:`load_device_bundle` is the boundary: before anything runs it checks the format,
the signature (when a public key is given), every file's size and SHA-256 and that the
folder holds nothing unlisted but the signature (:mod:`.manifest`), every tensor's dtype,
shape and value range, that the stored multipliers and shifts are the ones the scales
give, and that the layers fit the architecture and chain. Any failure raises
:class:`DeviceBundleError` naming the file or tensor and what is wrong. No pickle: JSON
and safetensors only.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .chain import FullyConnectedChain
from .fixed_point import ROUNDING_MODES
from .fully_connected import FullyConnectedSpec
from .linear import Int8Linear
from .manifest import (
    MANIFEST,
    ManifestError,
    WrongFormat,
    file_entries,
    parse_manifest,
    read_files,
    sha256_hex,
    write_atomically,
)
from .models import RuntimeModel
from .registry import architecture
from .quantization import INT8_MAX, INT8_MIN
from .safetensors_io import SafetensorsFormatError, read_safetensors, write_safetensors
from .signing import SignatureError, sign_manifest, verify_manifest

__all__ = [
    "FORMAT",
    "MANIFEST",
    "REFERENCE",
    "SIGNATURE",
    "WEIGHTS",
    "DeviceBundle",
    "DeviceBundleError",
    "Reference",
    "load_device_bundle",
    "write_device_bundle",
]

FORMAT = "fedlora-device/1"
WEIGHTS = "weights.safetensors"
REFERENCE = "reference.safetensors"
SIGNATURE = "manifest.sig"
_KNOWN_FILES = (WEIGHTS, REFERENCE)
_REQUIRED_KEYS = ("format", "architecture", "rounding", "linears", "floats", "task", "provenance", "files")
_FIX = "the bundle is corrupted or was tampered with; export it again with `fedlora export`"


class DeviceBundleError(ValueError):
    """A device bundle failed a check; the message names the file or tensor and the problem."""


@dataclass(frozen=True)
class Reference:
    """Test data and the torch model's answers on it, stored at export time."""

    inputs: np.ndarray  # tokens (N, T) int or features (N, F) float32
    targets: np.ndarray  # (N, T) or (N,) int
    torch_predictions: np.ndarray  # like targets: the torch model's top-1
    torch_metrics: dict[str, float]
    description: str


@dataclass(frozen=True)
class DeviceBundle:
    path: Path
    manifest: dict[str, Any]
    model: RuntimeModel
    reference: Reference | None
    #: "verified" (a public key was given and the signature matched), "unchecked" (signed,
    #: no key given) or "unsigned"
    signature: str

    @property
    def id(self) -> str:
        """SHA-256 of ``manifest.json``, which pins every other file."""
        return sha256_hex((self.path / MANIFEST).read_bytes())


def fc_tensor(layer: str, index: int, field: str) -> str:
    return f"{layer}/fc{index}/{field}"


# ---------------------------------------------------------------------------------------
# Writing


def write_device_bundle(
    directory: str | os.PathLike,
    model: RuntimeModel,
    *,
    task: Mapping[str, Any],
    provenance: Mapping[str, Any],
    reference: Reference | None = None,
    sign_key_pem: bytes | None = None,
) -> Path:
    """Write ``model`` as a device bundle in ``directory`` (replaced atomically).

    task: name, config, fingerprint, primary_metric. provenance: free-form JSON (run,
    client, base id, calibration, ...). reference: optional test data and torch answers.
    sign_key_pem: an Ed25519 private key (PEM) to sign the manifest with.
    """
    tensors: dict[str, np.ndarray] = {}
    linears = {}
    rounding = None
    for name, linear in model.linears.items():
        rounding = linear.chain.rounding
        fcs = []
        for i, prepared in enumerate(linear.chain.layers):
            spec = prepared.spec
            tensors[fc_tensor(name, i, "weights")] = np.asarray(spec.weights, np.int8)
            tensors[fc_tensor(name, i, "weight_scale")] = np.asarray(spec.weight_scale, np.float32).reshape(-1)
            if spec.bias is not None:
                tensors[fc_tensor(name, i, "bias")] = prepared.bias.astype(np.int32)
            tensors[fc_tensor(name, i, "output_multiplier")] = prepared.output_multiplier.astype(np.int32)
            tensors[fc_tensor(name, i, "output_shift")] = prepared.output_shift.astype(np.int32)
            fcs.append({
                "input": _quant(spec.input_scale, spec.input_zero_point),
                "output": _quant(spec.output_scale, spec.output_zero_point),
                "activation": spec.activation,
                "bias": spec.bias is not None,
                "per_channel": bool(spec.per_channel),
            })
        if linear.channel_scale is not None:
            tensors[f"{name}/channel_scale"] = linear.channel_scale
            tensors[f"{name}/channel_offset"] = linear.channel_offset
        linears[name] = {"fcs": fcs, "channel_affine": linear.channel_scale is not None}
    for name, value in model.floats.items():
        tensors[name] = np.asarray(value, np.float32)

    files = {WEIGHTS: write_safetensors(tensors)}
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "architecture": model.architecture(),
        "rounding": rounding,
        "linears": linears,
        "floats": sorted(model.floats),
        "task": dict(task),
        "provenance": dict(provenance),
    }
    if reference is not None:
        files[REFERENCE] = write_safetensors({
            "inputs": reference.inputs, "targets": reference.targets,
            "torch_predictions": reference.torch_predictions,
        })
        manifest["reference"] = {"file": REFERENCE, "description": reference.description,
                                 "torch_metrics": dict(reference.torch_metrics)}
    manifest["files"] = file_entries(files)
    manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    files[MANIFEST] = manifest_bytes
    if sign_key_pem is not None:
        files[SIGNATURE] = sign_manifest(manifest_bytes, sign_key_pem)
    directory = Path(directory)
    write_atomically(directory, files)
    return directory


def _quant(scale: float, zero_point: int) -> dict[str, Any]:
    # A float32 scale printed as the shortest double that rounds back to it exactly.
    return {"scale": float(np.float32(scale)), "zero_point": int(zero_point)}


# ---------------------------------------------------------------------------------------
# Loading


def load_device_bundle(
    directory: str | os.PathLike, public_key_pem: bytes | None = None
) -> DeviceBundle:
    """Open, check and build the model of the bundle in ``directory``.

    public_key_pem: an Ed25519 public key (PEM); when given, ``manifest.sig`` must exist
    and verify. Raises :class:`DeviceBundleError` for any problem, before running anything.
    """
    directory = Path(directory)
    where = str(directory)
    if not (directory / MANIFEST).is_file():
        raise DeviceBundleError(f"{where} is not a device bundle: it has no {MANIFEST}")
    manifest_bytes = (directory / MANIFEST).read_bytes()
    signature = _check_signature(directory, manifest_bytes, public_key_pem)
    try:
        manifest = _parse_manifest(manifest_bytes, where)
        files = _read_files(directory, manifest, where)
        return _Loader(where, manifest, files, signature).build()
    except DeviceBundleError:
        raise
    except _MALFORMED as exc:  # a shape the checks above did not foresee: still the bundle's fault
        raise DeviceBundleError(f"{where}: {MANIFEST} or a file it lists is malformed ({type(exc).__name__}: {exc}); {_FIX}") from exc


#: what parsing a hostile manifest can raise besides the checks' own errors
_MALFORMED = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, RecursionError, MemoryError)


def _check_signature(directory: Path, manifest_bytes: bytes, public_key_pem: bytes | None) -> str:
    sig_path = directory / SIGNATURE
    if public_key_pem is None:
        return "unchecked" if sig_path.is_file() else "unsigned"
    if not sig_path.is_file():
        raise DeviceBundleError(
            f"{directory}: a public key was given but the bundle has no {SIGNATURE}; it was exported "
            "without --sign-key, or the signature was removed"
        )
    try:
        verify_manifest(manifest_bytes, sig_path.read_bytes(), public_key_pem)
    except SignatureError as exc:
        raise DeviceBundleError(f"{directory}: {SIGNATURE}: {exc}") from exc
    return "verified"


def _parse_manifest(manifest_bytes: bytes, where: str) -> dict[str, Any]:
    try:
        manifest = parse_manifest(manifest_bytes, FORMAT)
    except WrongFormat as exc:
        raise DeviceBundleError(
            f"{where}: {exc}; this is not a fedlora device bundle (a base bundle is not runnable: export it "
            "with `fedlora export --base-only`)"
        ) from exc
    except ManifestError as exc:
        raise DeviceBundleError(f"{where}: {exc}; {_FIX}") from exc
    missing = [key for key in _REQUIRED_KEYS if key not in manifest]
    if missing:
        raise DeviceBundleError(f"{where}: {MANIFEST} lacks {', '.join(map(repr, missing))}; {_FIX}")
    for key, kind in (("architecture", dict), ("linears", dict), ("floats", list), ("task", dict),
                      ("provenance", dict), ("files", dict)):
        if not isinstance(manifest[key], kind):
            raise DeviceBundleError(f"{where}: {MANIFEST}: {key!r} must be a JSON {kind.__name__}; {_FIX}")
    return manifest


def _read_files(directory: Path, manifest: dict[str, Any], where: str) -> dict[str, bytes]:
    """The listed files, checked by :func:`.manifest.read_files` after this kind's own
    rules: only the weights (always) and the reference (with its manifest entry)."""
    listed = manifest["files"]
    unknown = sorted(set(listed) - set(_KNOWN_FILES))
    if unknown:
        raise DeviceBundleError(f"{where}: {MANIFEST} lists unexpected files {unknown}; {_FIX}")
    if WEIGHTS not in listed:
        raise DeviceBundleError(f"{where}: {MANIFEST} does not list {WEIGHTS}; {_FIX}")
    if (REFERENCE in listed) != ("reference" in manifest):
        raise DeviceBundleError(f"{where}: {MANIFEST}: 'reference' and the file {REFERENCE} come together; {_FIX}")
    try:
        return read_files(directory, manifest, unlisted=(MANIFEST, SIGNATURE))
    except ManifestError as exc:
        raise DeviceBundleError(f"{where}: {exc}; {_FIX}") from exc


class _Loader:
    """Checks one bundle's contents against its manifest and architecture, then builds it."""

    def __init__(self, where: str, manifest: dict[str, Any], files: dict[str, bytes], signature: str):
        self.where, self.manifest, self.signature = where, manifest, signature
        self.tensors = self._safetensors(WEIGHTS, files[WEIGHTS])
        self.reference_tensors = self._safetensors(REFERENCE, files[REFERENCE]) if REFERENCE in files else None
        self.used: set[str] = set()

    def fail(self, what: str, problem: str) -> DeviceBundleError:
        return DeviceBundleError(f"{self.where}: {what}: {problem}; {_FIX}")

    def _safetensors(self, name: str, data: bytes) -> dict[str, np.ndarray]:
        try:
            tensors, _ = read_safetensors(data)
        except SafetensorsFormatError as exc:
            raise self.fail(name, str(exc)) from exc
        return tensors

    def build(self) -> DeviceBundle:
        m = self.manifest
        rounding = m["rounding"]
        if rounding not in ROUNDING_MODES:
            raise self.fail(f"{MANIFEST}: rounding", f"must be one of {ROUNDING_MODES}, got {rounding!r}")
        arch = m["architecture"]
        try:
            model_class = architecture(arch.get("name"))
            config = model_class.parse_config(arch)
        except ValueError as exc:
            raise self.fail(f"{MANIFEST}: architecture", str(exc)) from exc

        shapes = model_class.linear_shapes(config)
        if set(m["linears"]) != set(shapes):
            raise self.fail(f"{MANIFEST}: linears", _set_difference(set(m["linears"]), set(shapes), "layers"))
        linears = {
            name: self._linear(name, m["linears"][name], in_out, model_class.fused_activation(config, name),
                               model_class.channel_affine_allowed(config, name), rounding)
            for name, in_out in shapes.items()
        }
        float_shapes = model_class.float_shapes(config)
        if sorted(m["floats"]) != sorted(float_shapes):
            raise self.fail(f"{MANIFEST}: floats", _set_difference(set(m["floats"]), set(float_shapes), "tensors"))
        floats = {name: self._float(name, shape) for name, shape in float_shapes.items()}
        unused = sorted(set(self.tensors) - self.used)
        if unused:
            raise self.fail(WEIGHTS, f"holds tensors the manifest does not describe: {unused[:5]}")
        try:
            model = model_class(config, linears, floats)
        except ValueError as exc:  # e.g. an MLP whose layers do not chain in int8
            raise self.fail(WEIGHTS, f"the layers do not fit together: {exc}") from exc
        reference = self._reference(model) if self.reference_tensors is not None else None
        return DeviceBundle(Path(self.where), m, model, reference, self.signature)

    # -- one linear layer ---------------------------------------------------------------

    def _linear(self, name: str, entry: Any, in_out: tuple[int, int], activation: str,
                affine_allowed: bool, rounding: str) -> Int8Linear:
        what = f"{MANIFEST}: linears[{name!r}]"
        if not (isinstance(entry, dict) and isinstance(entry.get("fcs"), list)
                and isinstance(entry.get("channel_affine"), bool)):
            raise self.fail(what, "must have 'fcs' (a list) and 'channel_affine' (true or false)")
        fcs = entry["fcs"]
        if len(fcs) not in (1, 2):
            raise self.fail(what, f"has {len(fcs)} FCs; a linear layer is one FC (dense) or two (factorized)")
        specs, prepared_expect = [], []
        width = in_out[0]
        for i, fc in enumerate(fcs):
            last = i == len(fcs) - 1
            spec, multiplier, shift = self._fc(name, i, fc, width, in_out[1] if last else None,
                                               activation if last else "none")
            specs.append(spec)
            prepared_expect.append((multiplier, shift))
            width = spec.weights.shape[0]
        try:
            chain = FullyConnectedChain(specs, rounding)
        except ValueError as exc:
            raise self.fail(f"layer {name!r}", str(exc)) from exc
        for i, (prepared, (multiplier, shift)) in enumerate(zip(chain.layers, prepared_expect)):
            if not (np.array_equal(prepared.output_multiplier, multiplier)
                    and np.array_equal(prepared.output_shift, shift)):
                raise self.fail(
                    fc_tensor(name, i, "output_multiplier, output_shift"),
                    f"differ from the ones the scales give for {rounding} rounding (a scale or a "
                    "multiplier was changed)",
                )
        scale = offset = None
        if entry["channel_affine"]:
            if not affine_allowed:
                raise self.fail(what, "has a per-channel output affine, which this layer cannot have")
            scale = self._tensor(f"{name}/channel_scale", np.float32, (in_out[1],))
            offset = self._tensor(f"{name}/channel_offset", np.float32, (in_out[1],))
            if not (np.all(np.isfinite(scale)) and np.all(scale > 0) and np.all(np.isfinite(offset))):
                raise self.fail(f"{name}/channel_scale, channel_offset", "must be finite, scales > 0")
        return Int8Linear(chain, scale, offset)

    def _fc(self, layer: str, i: int, fc: Any, depth: int, out: int | None, activation: str):
        what = f"{MANIFEST}: linears[{layer!r}].fcs[{i}]"
        keys = {"input", "output", "activation", "bias", "per_channel"}
        if not isinstance(fc, dict) or set(fc) != keys:
            raise self.fail(what, f"must have exactly the keys {sorted(keys)}")
        if fc["activation"] != activation:
            raise self.fail(what, f"activation {fc['activation']!r}; this layer's is {activation!r}")
        s_in, z_in = self._quant_params(what + ".input", fc["input"])
        s_out, z_out = self._quant_params(what + ".output", fc["output"])
        weights = self._tensor(fc_tensor(layer, i, "weights"), np.int8, None)
        if weights.ndim != 2 or weights.shape[1] != depth or (out is not None and weights.shape[0] != out) \
                or weights.shape[0] == 0:
            expected = f"({out if out is not None else 'rank'}, {depth})"
            raise self.fail(fc_tensor(layer, i, "weights"), f"has shape {weights.shape}, expected {expected}")
        rows = weights.shape[0]
        per_channel = fc["per_channel"]
        if not isinstance(per_channel, bool) or not isinstance(fc["bias"], bool):
            raise self.fail(what, "'per_channel' and 'bias' must be true or false")
        weight_scale = self._tensor(fc_tensor(layer, i, "weight_scale"), np.float32, (rows if per_channel else 1,))
        if not (np.all(np.isfinite(weight_scale)) and np.all(weight_scale > 0)):
            raise self.fail(fc_tensor(layer, i, "weight_scale"), "must be finite and > 0")
        bias = self._tensor(fc_tensor(layer, i, "bias"), np.int32, (rows,)) if fc["bias"] else None
        multiplier = self._tensor(fc_tensor(layer, i, "output_multiplier"), np.int32, (rows,))
        shift = self._tensor(fc_tensor(layer, i, "output_shift"), np.int32, (rows,))
        normalized = (multiplier >= 2**30) | ((multiplier == 0) & (shift == 0))
        if not np.all(normalized) or np.any(shift < -31) or np.any(shift > 30):
            raise self.fail(fc_tensor(layer, i, "output_multiplier, output_shift"),
                            "out of range (multiplier in [2^30, 2^31) or 0, shift in [-31, 30])")
        spec = FullyConnectedSpec(weights, weight_scale, s_in, z_in, s_out, z_out, bias, activation)
        return spec, multiplier, shift

    def _quant_params(self, what: str, entry: Any) -> tuple[float, int]:
        if not isinstance(entry, dict) or set(entry) != {"scale", "zero_point"}:
            raise self.fail(what, "must be {'scale': ..., 'zero_point': ...}")
        scale, zero_point = entry["scale"], entry["zero_point"]
        if (not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale)
                or not np.isfinite(np.float32(scale)) or not np.float32(scale) > 0):
            raise self.fail(what, f"scale {scale!r} must be finite and > 0 in float32")
        if not isinstance(zero_point, int) or isinstance(zero_point, bool) or not INT8_MIN <= zero_point <= INT8_MAX:
            raise self.fail(what, f"zero point {zero_point!r} must be an integer in [-128, 127]")
        return float(np.float32(scale)), zero_point

    # -- tensors --------------------------------------------------------------------------

    def _tensor(self, name: str, dtype, shape: tuple[int, ...] | None) -> np.ndarray:
        if name not in self.tensors:
            raise self.fail(WEIGHTS, f"tensor {name!r} is missing")
        array = self.tensors[name]
        if array.dtype != np.dtype(dtype):
            raise self.fail(f"{WEIGHTS}: tensor {name!r}", f"has dtype {array.dtype}, expected {np.dtype(dtype)}")
        if shape is not None and array.shape != shape:
            raise self.fail(f"{WEIGHTS}: tensor {name!r}", f"has shape {array.shape}, expected {shape}")
        self.used.add(name)
        return array

    def _float(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        array = self._tensor(name, np.float32, shape)
        if not np.all(np.isfinite(array)):
            raise self.fail(f"{WEIGHTS}: tensor {name!r}", "holds NaN or infinity")
        return array

    def _reference(self, model: RuntimeModel) -> Reference:
        tensors, entry = self.reference_tensors, self.manifest["reference"]
        what = REFERENCE
        if set(tensors) != {"inputs", "targets", "torch_predictions"}:
            raise self.fail(what, f"must hold inputs, targets, torch_predictions; has {sorted(tensors)}")
        if not (isinstance(entry, dict) and isinstance(entry.get("torch_metrics"), dict)
                and isinstance(entry.get("description"), str)):
            raise self.fail(f"{MANIFEST}: reference", "needs 'description' and 'torch_metrics'")
        inputs, targets, predictions = tensors["inputs"], tensors["targets"], tensors["torch_predictions"]
        try:
            model.check_inputs(inputs)
        except ValueError as exc:
            raise self.fail(f"{what}: inputs", str(exc)) from exc
        expected = inputs.shape if model.input_kind == "tokens" else inputs.shape[:1]
        classes = model.linears["head"].out_features
        for name, array in (("targets", targets), ("torch_predictions", predictions)):
            if array.dtype.kind not in "iu" or array.shape != expected:
                raise self.fail(f"{what}: {name}", f"must be integers of shape {expected}, got {array.dtype} {array.shape}")
            if array.size and (array.min() < 0 or array.max() >= classes):
                raise self.fail(f"{what}: {name}", f"values must lie in [0, {classes})")
        return Reference(inputs, targets, predictions, dict(entry["torch_metrics"]), entry["description"])


def _set_difference(found: set[str], expected: set[str], kind: str) -> str:
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    parts = []
    if missing:
        parts.append(f"missing {kind} {missing[:5]}")
    if unexpected:
        parts.append(f"unexpected {kind} {unexpected[:5]}")
    return " and ".join(parts) + " for this architecture"
