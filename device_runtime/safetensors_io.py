"""Read and write the safetensors format with numpy alone (no ``safetensors`` package).

The format (huggingface/safetensors, "format" section of its README):

    [8 bytes]  N, the header length, unsigned 64-bit little-endian
    [N bytes]  a UTF-8 JSON object: {name: {"dtype": "I8", "shape": [...],
               "data_offsets": [begin, end]}, ...}, optionally "__metadata__": {str: str}
    [rest]     the byte buffer; tensor data is raw, C order, little-endian, at
               buffer[begin:end], offsets relative to the start of the buffer

Tensors are stored in name order, back to back, so the buffer has no holes. The reader
is a boundary (a bundle comes from disk): it checks every offset, size and dtype before
it touches the data, and raises :class:`SafetensorsFormatError` (a ``ValueError``) that
names the tensor and what is wrong. Arrays it returns are read-only views of a private
copy of the bytes.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping

import numpy as np

__all__ = ["DTYPES", "SafetensorsFormatError", "read_safetensors", "write_safetensors"]

#: safetensors dtype name -> numpy little-endian dtype (the subset a device bundle uses)
DTYPES: dict[str, np.dtype] = {
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "I16": np.dtype("<i2"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
}
_NAME_OF = {dtype: name for name, dtype in DTYPES.items()}
METADATA = "__metadata__"
#: a header larger than this is refused before it is read (the reference library's limit)
MAX_HEADER_BYTES = 100_000_000
#: dimensions a tensor may have (numpy allows 64; no fedlora tensor has more than 4)
MAX_DIMENSIONS = 8


class SafetensorsFormatError(ValueError):
    """The bytes are not a well-formed safetensors file; the message says where."""


def write_safetensors(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialize ``tensors`` (name -> array of a dtype in :data:`DTYPES`) to bytes.

    Arrays are written C-contiguous and little-endian whatever their memory layout: a
    Fortran-ordered array (an SVD factor, a transpose) is copied first, never written as
    its raw buffer.
    """
    header: dict[str, object] = {}
    if metadata:
        header[METADATA] = {str(k): str(v) for k, v in metadata.items()}
    chunks, offset = [], 0
    for name in sorted(tensors):
        if name == METADATA:
            raise ValueError(f"{METADATA!r} is reserved and cannot name a tensor")
        array = np.asarray(tensors[name])
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        if dtype not in _NAME_OF:
            raise ValueError(f"tensor {name!r}: dtype {array.dtype} is not one of {sorted(DTYPES)}")
        data = np.ascontiguousarray(array, dtype=dtype).tobytes()
        header[name] = {"dtype": _NAME_OF[dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # pad so the buffer starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def read_safetensors(data: bytes) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Parse safetensors bytes into ``(tensors, metadata)``, checking everything first.

    Raises :class:`SafetensorsFormatError` for a truncated file, a header that is not a
    JSON object of well-formed entries, an unknown dtype, a shape whose size does not
    match its byte range, ranges that overlap, leave holes or run past the end.
    """
    if len(data) < 8:
        raise SafetensorsFormatError(f"file is {len(data)} bytes, shorter than the 8-byte header length")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > MAX_HEADER_BYTES or 8 + header_len > len(data):
        raise SafetensorsFormatError(
            f"header length {header_len} does not fit in the {len(data)}-byte file (truncated or corrupted)"
        )
    try:
        header = json.loads(data[8 : 8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SafetensorsFormatError(f"header is not UTF-8 JSON ({exc})") from exc
    except RecursionError:
        raise SafetensorsFormatError("header nests JSON too deeply") from None
    if not isinstance(header, dict):
        raise SafetensorsFormatError(f"header must be a JSON object, got {type(header).__name__}")
    metadata = header.pop(METADATA, {}) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise SafetensorsFormatError(f"{METADATA} must map strings to strings")
    buffer = memoryview(bytes(data[8 + header_len :]))  # a private copy: callers may mutate data
    entries = sorted(((_entry(name, info), name) for name, info in header.items()), key=lambda e: e[0][2:])
    position, tensors = 0, {}
    for (dtype, shape, begin, end), name in entries:
        if begin != position:
            problem = "overlaps the previous tensor" if begin < position else "leaves a hole before it"
            raise SafetensorsFormatError(f"tensor {name!r}: data_offsets {[begin, end]} {problem}")
        if end > len(buffer):
            raise SafetensorsFormatError(
                f"tensor {name!r}: data_offsets {[begin, end]} run past the {len(buffer)}-byte buffer "
                "(the file is truncated)"
            )
        array = np.frombuffer(buffer[begin:end], dtype=dtype).reshape(shape)
        tensors[name] = array  # read-only: frombuffer over bytes
        position = end
    if position != len(buffer):
        raise SafetensorsFormatError(f"{len(buffer) - position} trailing bytes after the last tensor")
    return tensors, dict(metadata)


def _entry(name: object, info: object) -> tuple[np.dtype, tuple[int, ...], int, int]:
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise SafetensorsFormatError(f"tensor {name!r}: entry must have exactly dtype, shape, data_offsets")
    dtype = DTYPES.get(info["dtype"]) if isinstance(info["dtype"], str) else None
    if dtype is None:
        raise SafetensorsFormatError(f"tensor {name!r}: dtype {info['dtype']!r} is not one of {sorted(DTYPES)}")
    shape, offsets = info["shape"], info["data_offsets"]
    if not (isinstance(shape, list) and len(shape) <= MAX_DIMENSIONS and all(_is_count(d) for d in shape)):
        raise SafetensorsFormatError(f"tensor {name!r}: shape {shape!r} must be a list of at most {MAX_DIMENSIONS} non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)
            and offsets[0] <= offsets[1]):
        raise SafetensorsFormatError(f"tensor {name!r}: data_offsets {offsets!r} must be [begin, end], begin <= end")
    size = math.prod(shape) * dtype.itemsize  # Python ints: a hostile shape cannot wrap around
    if offsets[1] - offsets[0] != size:
        raise SafetensorsFormatError(
            f"tensor {name!r}: shape {shape} of {info['dtype']} needs {size} bytes, data_offsets give "
            f"{offsets[1] - offsets[0]}"
        )
    return dtype, tuple(shape), offsets[0], offsets[1]


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
