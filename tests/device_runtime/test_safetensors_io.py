"""The numpy-only safetensors reader and writer: byte-compatible with the reference
library both ways, and strict about malformed files."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from fedlora.device_runtime.safetensors_io import (
    DTYPES,
    SafetensorsFormatError,
    read_safetensors,
    write_safetensors,
)


def sample_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    tensors = {f"t_{name}": rng.integers(-100, 100, size=(3, 5)).astype(dtype) for name, dtype in DTYPES.items()}
    tensors["fortran"] = np.asfortranarray(rng.normal(size=(4, 6)).astype(np.float32))  # SVD factors often are
    tensors["transposed"] = rng.normal(size=(6, 4)).astype(np.float32).T
    tensors["scalar"] = np.array(3.5, dtype=np.float32)
    tensors["empty"] = np.zeros((0, 7), dtype=np.int8)
    tensors["big_endian"] = np.arange(5, dtype=">i4")
    return tensors


def test_round_trip_is_exact_in_value_dtype_and_shape():
    tensors = sample_tensors()
    loaded, metadata = read_safetensors(write_safetensors(tensors, {"format": "test"}))
    assert metadata == {"format": "test"}
    assert set(loaded) == set(tensors)
    for name, value in tensors.items():
        assert loaded[name].shape == value.shape, name
        assert loaded[name].dtype == value.dtype.newbyteorder("<"), name
        np.testing.assert_array_equal(loaded[name], value)
        assert not loaded[name].flags.writeable


def test_compatible_with_the_reference_library():
    st = pytest.importorskip("safetensors.numpy")
    tensors = {k: v for k, v in sample_tensors().items() if k != "big_endian"}
    theirs = st.load(write_safetensors(tensors))
    for name, value in tensors.items():
        np.testing.assert_array_equal(theirs[name], value)
    ours, _ = read_safetensors(st.save({k: np.ascontiguousarray(v) for k, v in tensors.items()}))
    for name, value in tensors.items():
        np.testing.assert_array_equal(ours[name], value)


def test_reader_copies_its_input():
    data = bytearray(write_safetensors({"x": np.arange(4, dtype=np.int32)}))
    loaded, _ = read_safetensors(bytes(data))
    data[-4:] = b"\0\0\0\0"
    np.testing.assert_array_equal(loaded["x"], np.arange(4))


def raw(header: dict, buffer: bytes = b"", length: int | None = None) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + buffer


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"\x01\x02", "shorter than the 8-byte header length"),
        (raw({}, length=10**6), "does not fit"),
        (struct.pack("<Q", 4) + b"\xff\xfe\xfd\xfc", "not UTF-8 JSON"),
        (raw([1, 2]), "must be a JSON object"),
        (raw({"x": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 1]}}, b"\0"), "dtype 'Q7'"),
        (raw({"x": {"dtype": "I8", "shape": [2], "data_offsets": [0, 1]}}, b"\0"), "needs 2 bytes"),
        (raw({"x": {"dtype": "I8", "shape": [-1], "data_offsets": [0, 1]}}, b"\0"), "non-negative integers"),
        (raw({"x": {"dtype": "I8", "shape": [1], "data_offsets": [1, 0]}}, b"\0"), "begin <= end"),
        (raw({"x": {"dtype": "I8", "shape": [4], "data_offsets": [0, 4]}}, b"\0\0"), "run past"),
        (raw({"x": {"dtype": "I8", "shape": [1], "data_offsets": [1, 2]}}, b"\0\0"), "leaves a hole"),
        (raw({"a": {"dtype": "I8", "shape": [2], "data_offsets": [0, 2]},
              "b": {"dtype": "I8", "shape": [2], "data_offsets": [1, 3]}}, b"\0\0\0"), "overlaps"),
        (raw({"x": {"dtype": "I8", "shape": [1], "data_offsets": [0, 1]}}, b"\0\0"), "trailing bytes"),
        (raw({"x": {"dtype": "I8", "shape": [1]}}, b"\0"), "exactly dtype, shape, data_offsets"),
        (raw({"__metadata__": {"a": 1}}), "__metadata__"),
    ],
)
def test_malformed_files_are_refused(data, fragment):
    with pytest.raises(SafetensorsFormatError) as caught:
        read_safetensors(data)
    assert fragment in str(caught.value)


def test_writer_refuses_unsupported_dtypes_and_reserved_names():
    with pytest.raises(ValueError, match="dtype"):
        write_safetensors({"x": np.array(["a"])})
    with pytest.raises(ValueError, match="reserved"):
        write_safetensors({"__metadata__": np.zeros(1)})
