"""How adapter tensors travel: fp32, fp16, or int8 with one scale per rank slice.

fp32 and fp16 travel as one Flower ``Array`` per tensor, under the tensor's name — the
form Flower's own wrappers (differential privacy, SecAgg+) expect.

int8 is a compression codec and travels as one frame (a single uint8 ``Array`` named
``int8-frame``), because Flower spends about 330 bytes of framing on every Array — more
than a small int8 tensor itself. The frame is still name-keyed: it starts with an 8-byte
digest of the sorted tensor names and shapes, then holds each tensor in sorted-name
order as float32 scales followed by int8 values. A receiver that disagrees about any
name or shape sees a different digest and refuses the frame.

Each tensor is viewed as 2-D (first axis × the rest) and quantized symmetric per slice
along its *shorter* side, with the same quantizer as the INT8 base
(``device_runtime.quantization``): for adapter factors that is one scale per rank
component (A's rows, B's columns), so scales cost ``r`` floats, not ``m``. Each element's
error is at most half its slice's step.

Quantizing an update loses a little of it every round. Error feedback keeps what was lost
on the client and adds it to the next update, so nothing is lost for good:
``sent = Q(Δ + e)``, ``e ← Δ + e − D(sent)``.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np

from fedlora.device_runtime.quantization import dequantize_symmetric, quantize_symmetric
from fedlora.errors import FedloraError

WireFormat = Literal["fp32", "fp16", "int8"]
WIRE_FORMATS: tuple[str, ...] = ("fp32", "fp16", "int8")
FRAME = "int8-frame"
DIGEST_BYTES = 8
FLOAT_DTYPES = {"fp32": np.dtype(np.float32), "fp16": np.dtype(np.float16)}

Shapes = dict[str, tuple[int, ...]]


class FrameError(ValueError):
    """A payload that does not match the layout the receiver expects."""


def check_format(wire: str) -> WireFormat:
    if wire not in WIRE_FORMATS:
        raise FedloraError(f"unknown wire format {wire!r}; choose one of {', '.join(WIRE_FORMATS)}")
    return wire  # type: ignore[return-value]


def layout_digest(shapes: Shapes) -> bytes:
    text = ";".join(f"{name}:{'x'.join(map(str, shape))}" for name, shape in sorted(shapes.items()))
    return hashlib.sha256(text.encode()).digest()[:DIGEST_BYTES]


def _matrix(shape: tuple[int, ...]) -> tuple[int, int, bool]:
    """(slices, slice length, transposed) of a tensor's 2-D view (first axis × the rest;
    vectors and scalars are one row), sliced along its shorter side."""
    rows, cols = (shape[0], int(np.prod(shape[1:]))) if len(shape) >= 2 else (1, int(np.prod(shape)))
    return (cols, rows, True) if rows > cols else (rows, cols, False)


def _tensor_bytes(shape: tuple[int, ...]) -> int:
    slices, length, _ = _matrix(shape)
    return 4 * slices + slices * length


def frame_bytes(shapes: Shapes) -> int:
    return DIGEST_BYTES + sum(_tensor_bytes(shape) for shape in shapes.values())


def _pack(tensors: dict[str, np.ndarray]) -> np.ndarray:
    shapes = {name: tuple(value.shape) for name, value in tensors.items()}
    parts = [np.frombuffer(layout_digest(shapes), dtype=np.uint8)]
    for name in sorted(tensors):
        slices, length, transposed = _matrix(shapes[name])
        matrix = tensors[name].reshape(length, slices).T if transposed else tensors[name].reshape(slices, length)
        q, scale = quantize_symmetric(matrix)
        parts += [scale.astype("<f4").view(np.uint8), q.view(np.uint8).ravel()]
    return np.concatenate(parts)


def _unpack(frame: np.ndarray, shapes: Shapes) -> dict[str, np.ndarray]:
    if frame.dtype != np.uint8 or frame.ndim != 1 or frame.size != frame_bytes(shapes):
        raise FrameError(f"int8 frame is {frame.dtype}{tuple(frame.shape)}, expected uint8 ({frame_bytes(shapes)},)")
    if frame[:DIGEST_BYTES].tobytes() != layout_digest(shapes):
        raise FrameError("int8 frame layout digest differs: sender and receiver disagree on tensor names or shapes")
    tensors, offset = {}, DIGEST_BYTES
    for name in sorted(shapes):
        slices, length, transposed = _matrix(shapes[name])
        scale = frame[offset : offset + 4 * slices].view("<f4").astype(np.float32)
        offset += 4 * slices
        q = frame[offset : offset + slices * length].view(np.int8).reshape(slices, length)
        offset += slices * length
        if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise FrameError(f"int8 frame has invalid scales for {name}")
        matrix = dequantize_symmetric(q, scale)
        tensors[name] = (matrix.T if transposed else matrix).reshape(shapes[name])
    return tensors


def encode(tensors: dict[str, np.ndarray], wire: WireFormat) -> dict[str, np.ndarray]:
    """Arrays to put in an ArrayRecord (name-keyed)."""
    if wire == "int8":
        return {FRAME: _pack({name: np.asarray(value, np.float32) for name, value in tensors.items()})}
    return {name: np.asarray(value, dtype=np.float32).astype(FLOAT_DTYPES[wire]) for name, value in tensors.items()}


def decode(payload: dict[str, np.ndarray], wire: WireFormat, shapes: Shapes) -> dict[str, np.ndarray]:
    """Float32 tensors by name, checked against the expected ``shapes`` (raises FrameError)."""
    if wire == "int8":
        if set(payload) != {FRAME}:
            raise FrameError(f"an int8 payload is one array named {FRAME!r}, got {sorted(payload)[:3]}")
        return _unpack(payload[FRAME], shapes)
    missing, unexpected = sorted(set(shapes) - set(payload)), sorted(set(payload) - set(shapes))
    if missing or unexpected:
        raise FrameError(f"missing arrays {missing[:3]}, unexpected arrays {unexpected[:3]}")
    tensors = {}
    for name, shape in shapes.items():
        value = payload[name]
        if value.dtype != FLOAT_DTYPES[wire] or tuple(value.shape) != tuple(shape):
            raise FrameError(f"{name} is {value.dtype}{tuple(value.shape)}, expected {FLOAT_DTYPES[wire]}{tuple(shape)}")
        if not np.all(np.isfinite(value)):
            raise FrameError(f"{name} has non-finite values")
        tensors[name] = value.astype(np.float32)
    return tensors


class ErrorFeedback:
    """The part of past updates that quantization dropped, per tensor, kept on the client."""

    def __init__(self, residual: dict[str, np.ndarray] | None = None):
        self.residual = dict(residual or {})

    def encode(self, update: dict[str, np.ndarray], wire: WireFormat) -> dict[str, np.ndarray]:
        corrected = {name: value + self.residual.get(name, 0.0) for name, value in update.items()}
        payload = encode(corrected, wire)
        sent = decode(payload, wire, {name: value.shape for name, value in corrected.items()})
        self.residual = {name: (corrected[name] - sent[name]).astype(np.float32) for name in corrected}
        return payload
