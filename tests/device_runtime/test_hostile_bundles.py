"""A loader that only ever raises its own error: hostile manifests and weights files —
absurd sizes, integers past int64, deep nesting, random mutations — end in a
DeviceBundleError (or SafetensorsFormatError), quickly, before anything large is allocated."""

from __future__ import annotations

import copy
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model_cases import tiny_char_transformer, tiny_mlp
from test_device_bundle import rewrite, write

from fedlora.device_runtime import DeviceBundleError, load_device_bundle
from fedlora.device_runtime.bundle import MANIFEST
from fedlora.device_runtime.safetensors_io import SafetensorsFormatError, read_safetensors, write_safetensors


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pristine")
    return {"transformer": write(tiny_char_transformer(), root / "transformer"), "mlp": write(tiny_mlp(), root / "mlp")}


def copied(source: Path, target: Path) -> Path:
    target.mkdir()
    for file in source.iterdir():
        (target / file.name).write_bytes(file.read_bytes())
    return target


def refused_quickly(directory: Path) -> str:
    """The error, which must come from the architecture's limits — checked before anything
    is built — not from running out of something later."""
    with pytest.raises(DeviceBundleError) as caught:
        load_device_bundle(directory)
    assert "at most" in str(caught.value), str(caught.value)
    return str(caught.value)


@pytest.mark.parametrize(
    "edit, says",
    [
        (lambda a: a.update(n_layers=10**6), "n_layers"),
        (lambda a: a.update(n_layers=2**70), "n_layers"),
        (lambda a: a.update(d_model=2**63, n_heads=1), "d_model"),
        (lambda a: a.update(vocab_size=2**64 + 1), "vocab_size"),
    ],
    ids=["a million layers", "2^70 layers", "d_model 2^63", "vocab past uint64"],
)
def test_absurd_architectures_are_refused_before_anything_is_built(pristine, tmp_path, edit, says):
    bundle = copied(pristine["transformer"], tmp_path / "b")
    rewrite(bundle, manifest=lambda m: edit(m["architecture"]))
    assert says in refused_quickly(bundle)


def test_an_mlp_with_absurd_hidden_layers_is_refused(pristine, tmp_path):
    bundle = copied(pristine["mlp"], tmp_path / "b")
    rewrite(bundle, manifest=lambda m: m["architecture"].update(hidden=[2**40] * 3))
    assert "hidden" in refused_quickly(bundle)


def test_deeply_nested_json_is_refused(pristine, tmp_path):
    bundle = copied(pristine["transformer"], tmp_path / "b")
    manifest = json.loads((bundle / MANIFEST).read_text())
    text = json.dumps(manifest)[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}"
    (bundle / MANIFEST).write_text(text)
    with pytest.raises(DeviceBundleError, match="manifest.json nests JSON too deeply"):
        load_device_bundle(bundle)


def _safetensors_with(entry: dict, payload: bytes = b"") -> bytes:
    header = json.dumps({"t": entry}).encode()
    return struct.pack("<Q", len(header)) + header + payload


@pytest.mark.parametrize(
    "entry",
    [
        {"dtype": "I8", "shape": [2**63, 2], "data_offsets": [0, 0]},
        {"dtype": "I8", "shape": [2**32, 2**32], "data_offsets": [0, 0]},  # wraps int64 to 0
        {"dtype": "I8", "shape": [2**64], "data_offsets": [0, 2**64]},
        {"dtype": "I8", "shape": [1] * 100, "data_offsets": [0, 1]},
    ],
    ids=["2^63 rows", "wraps to 0", "2^64 bytes", "100 dimensions"],
)
def test_shapes_past_int64_are_refused(entry):
    with pytest.raises(SafetensorsFormatError):
        read_safetensors(_safetensors_with(entry, b"\0"))


def test_deeply_nested_safetensors_header_is_refused():
    header = b'{"t": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(SafetensorsFormatError):
        read_safetensors(struct.pack("<Q", len(header)) + header)


# -- mutations ------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_manifest_mutation_gives_the_bundle_error(pristine, tmp_path_factory, data):
    kind = data.draw(st.sampled_from(sorted(pristine)))
    bundle = copied(pristine[kind], tmp_path_factory.mktemp("mutated") / "b")
    original = json.loads((bundle / MANIFEST).read_text())
    paths = [p for p in _paths(original) if p]
    path = data.draw(st.sampled_from(paths))
    replacement = data.draw(JSON_VALUES)

    target = original
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = copy.deepcopy(replacement)
    (bundle / MANIFEST).write_text(json.dumps(original))  # the weights stay as they were: their hash still holds
    try:
        load_device_bundle(bundle)  # some mutations are harmless (a provenance string)
    except DeviceBundleError:
        pass


@settings(max_examples=150, deadline=None)
@given(data=st.binary(min_size=0, max_size=64), where=st.integers(min_value=0, max_value=10_000))
def test_any_weights_corruption_gives_the_format_error(data, where):
    weights = write_safetensors({"a": np.arange(12, dtype=np.int8).reshape(3, 4), "b": np.ones(5, np.float32)})
    corrupted = weights[: where % (len(weights) + 1)] + data + weights[where % (len(weights) + 1) + len(data) :]
    try:
        read_safetensors(corrupted)
    except SafetensorsFormatError:
        pass
