"""The device bundle: exact round trip, and every check the loader makes before running.

Tampered, corrupted and truncated bundles must fail with a DeviceBundleError that names
the file or tensor; "consistent but malformed" bundles (a bad exporter: hashes right,
contents wrong) are made by rewriting a bundle and re-hashing it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from model_cases import feature_inputs, tiny_char_transformer, tiny_mlp, token_inputs

from fedlora.device_runtime import DeviceBundleError, Reference, load_device_bundle, write_device_bundle
from fedlora.device_runtime.bundle import MANIFEST, REFERENCE, SIGNATURE, WEIGHTS
from fedlora.device_runtime.safetensors_io import read_safetensors, write_safetensors

TASK = {"name": "tiny", "config": {"width": 8}, "fingerprint": "0" * 64, "primary_metric": "accuracy"}
PROVENANCE = {"run": "test", "client": "tiny:0", "base_id": "f" * 64}


def write(model, directory: Path, **kwargs) -> Path:
    return write_device_bundle(directory, model, task=TASK, provenance=PROVENANCE, **kwargs)


@pytest.fixture(scope="module")
def transformer():
    return tiny_char_transformer()


@pytest.fixture
def bundle(transformer, tmp_path) -> Path:
    return write(transformer, tmp_path / "bundle")


def rewrite(directory: Path, manifest=None, tensors=None) -> None:
    """Apply ``manifest(dict)`` / ``tensors(dict)`` edits and re-hash: a consistent bundle
    with wrong contents, as a buggy exporter would write."""
    m = json.loads((directory / MANIFEST).read_text())
    weights, _ = read_safetensors((directory / WEIGHTS).read_bytes())
    weights = {k: np.array(v) for k, v in weights.items()}
    if manifest:
        manifest(m)
    if tensors:
        tensors(weights)
    data = write_safetensors(weights)
    (directory / WEIGHTS).write_bytes(data)
    m["files"][WEIGHTS] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (directory / MANIFEST).write_text(json.dumps(m))


def fails(directory: Path, *fragments: str, key: bytes | None = None) -> str:
    with pytest.raises(DeviceBundleError) as caught:
        load_device_bundle(directory, key)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


# -- round trip -----------------------------------------------------------------------------


@pytest.mark.parametrize("build, inputs", [(tiny_char_transformer, token_inputs), (tiny_mlp, feature_inputs)])
@pytest.mark.parametrize("rounding", ["double", "single"])
def test_round_trip_runs_bit_identically(build, inputs, rounding, tmp_path):
    model = build(rounding=rounding)
    x = inputs(model)
    loaded = load_device_bundle(write(model, tmp_path / "b"))
    np.testing.assert_array_equal(loaded.model(x), model(x))
    assert loaded.manifest["format"] == "fedlora-device/1"
    assert loaded.manifest["rounding"] == rounding
    assert loaded.manifest["architecture"] == model.architecture()
    assert loaded.manifest["provenance"] == PROVENANCE and loaded.manifest["task"] == TASK
    assert loaded.signature == "unsigned" and loaded.reference is None
    assert loaded.model.flash_bytes() == model.flash_bytes()


def test_reference_round_trip(transformer, tmp_path):
    x = token_inputs(transformer)
    predictions = transformer(x).argmax(-1).astype(np.int32)
    reference = Reference(x.astype(np.int32), predictions, predictions, {"accuracy": 1.0}, "tiny test split")
    loaded = load_device_bundle(write(transformer, tmp_path / "b", reference=reference))
    assert loaded.reference.description == "tiny test split"
    assert loaded.reference.torch_metrics == {"accuracy": 1.0}
    np.testing.assert_array_equal(loaded.reference.inputs, x)
    assert set(loaded.manifest["files"]) == {WEIGHTS, REFERENCE}


def test_bundle_is_replaced_atomically_and_readable(transformer, bundle):
    write(transformer, bundle)  # overwriting an existing bundle
    assert sorted(p.name for p in bundle.iterdir()) == [MANIFEST, WEIGHTS]
    assert not list(bundle.parent.glob(".staging-*"))
    assert bundle.stat().st_mode & 0o055 == 0o055  # readable by others, like any export


# -- files: presence, hashes, sizes ----------------------------------------------------------


def test_not_a_bundle(tmp_path):
    fails(tmp_path, "has no manifest.json")


def test_flipped_byte_in_weights(bundle):
    data = bytearray((bundle / WEIGHTS).read_bytes())
    data[-1] ^= 0x01
    (bundle / WEIGHTS).write_bytes(bytes(data))
    fails(bundle, WEIGHTS, "SHA-256", "tampered")


def test_truncated_weights(bundle):
    data = (bundle / WEIGHTS).read_bytes()
    (bundle / WEIGHTS).write_bytes(data[: len(data) // 2])
    fails(bundle, WEIGHTS, "truncated")


def test_missing_weights(bundle):
    (bundle / WEIGHTS).unlink()
    fails(bundle, WEIGHTS, "missing")


def test_unlisted_file_in_the_folder(bundle):
    (bundle / "notes.txt").write_text("not pinned by the manifest")
    fails(bundle, "'notes.txt'", "does not list")


def test_manifest_not_json(bundle):
    (bundle / MANIFEST).write_text('{"format": "fedlora-device/1",')
    fails(bundle, "not valid JSON")


def test_base_bundle_is_not_a_device_bundle(bundle):
    rewrite(bundle, manifest=lambda m: m.update(format="fedlora-base/1"))
    fails(bundle, "'fedlora-base/1'", "fedlora-device/1")


def test_manifest_lacks_a_key(bundle):
    rewrite(bundle, manifest=lambda m: m.pop("linears"))
    fails(bundle, "lacks 'linears'")


def test_unexpected_file_listed(bundle):
    rewrite(bundle, manifest=lambda m: m["files"].update({"../evil.bin": {"sha256": "0", "bytes": 0}}))
    fails(bundle, "unexpected files", "../evil.bin")


def test_safetensors_header_garbled(bundle):
    data = bytearray((bundle / WEIGHTS).read_bytes())
    data[8:12] = b"\xff\xfe{["
    (bundle / WEIGHTS).write_bytes(bytes(data))
    m = json.loads((bundle / MANIFEST).read_text())
    m["files"][WEIGHTS]["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    (bundle / MANIFEST).write_text(json.dumps(m))
    fails(bundle, WEIGHTS, "header")


# -- tensors: names, dtypes, shapes, values --------------------------------------------------


def test_missing_tensor(bundle):
    rewrite(bundle, tensors=lambda t: t.pop("head/fc0/weights"))
    fails(bundle, "'head/fc0/weights' is missing")


def test_unexpected_tensor(bundle):
    rewrite(bundle, tensors=lambda t: t.update(extra=np.zeros(3, np.float32)))
    fails(bundle, "does not describe", "extra")


def test_weights_of_wrong_dtype(bundle):
    rewrite(bundle, tensors=lambda t: t.update({"head/fc0/weights": t["head/fc0/weights"].astype(np.int16)}))
    fails(bundle, "'head/fc0/weights'", "dtype int16", "expected int8")


def test_weights_of_wrong_shape(bundle):
    rewrite(bundle, tensors=lambda t: t.update({"head/fc0/weights": t["head/fc0/weights"][:, :-1].copy()}))
    fails(bundle, "head/fc0/weights", "shape")


def test_factorized_ranks_must_chain(bundle):
    def drop_rank(t):  # the first FC loses a row consistently; the second still expects it
        for field in ("weights", "weight_scale", "output_multiplier", "output_shift"):
            t[f"blocks.0.attn.q/fc0/{field}"] = t[f"blocks.0.attn.q/fc0/{field}"][:-1].copy()
    rewrite(bundle, tensors=drop_rank)
    fails(bundle, "blocks.0.attn.q/fc1/weights", "has shape (8, 4), expected (8, 3)")


def test_nan_in_float_tensor(bundle):
    def poison(t):
        t["ln_f.weight"] = t["ln_f.weight"].copy()
        t["ln_f.weight"][0] = np.nan
    rewrite(bundle, tensors=poison)
    fails(bundle, "'ln_f.weight'", "NaN")


def test_non_positive_weight_scale(bundle):
    rewrite(bundle, tensors=lambda t: t.update({"head/fc0/weight_scale": -t["head/fc0/weight_scale"]}))
    fails(bundle, "head/fc0/weight_scale", "> 0")


def test_scale_changed_in_manifest_breaks_multipliers(bundle):
    def scale_up(m):
        m["linears"]["blocks.1.ffn.fc2"]["fcs"][1]["output"]["scale"] *= 1.5
    rewrite(bundle, manifest=scale_up)
    fails(bundle, "blocks.1.ffn.fc2/fc1/output_multiplier", "differ")


def test_multiplier_out_of_range(bundle):
    def corrupt(t):
        t["head/fc0/output_multiplier"] = t["head/fc0/output_multiplier"].copy()
        t["head/fc0/output_multiplier"][0] = 12345
    rewrite(bundle, tensors=corrupt)
    fails(bundle, "head/fc0/output_multiplier", "out of range")


@pytest.mark.parametrize("value", [128, -129, 1.5, True])
def test_zero_point_out_of_range(bundle, value):
    def set_zero_point(m):
        m["linears"]["head"]["fcs"][0]["input"]["zero_point"] = value
    rewrite(bundle, manifest=set_zero_point)
    fails(bundle, "linears['head'].fcs[0].input", "zero point")


# 1e-50 is 0 in float32; Python's json writes and reads Infinity, as a careless exporter might
@pytest.mark.parametrize("value", [0.0, -0.1, 1e-50, "0.1", float("inf")])
def test_activation_scale_invalid(bundle, value):
    def set_scale(m):
        m["linears"]["head"]["fcs"][0]["output"]["scale"] = value
    rewrite(bundle, manifest=set_scale)
    fails(bundle, "linears['head'].fcs[0].output", "scale")


def test_wrong_fused_activation(bundle):
    def relu(m):
        m["linears"]["head"]["fcs"][0]["activation"] = "relu"
    rewrite(bundle, manifest=relu)
    fails(bundle, "activation 'relu'", "'none'")


def test_too_many_fcs(bundle):
    def triple(m):
        fcs = m["linears"]["head"]["fcs"]
        fcs.append(dict(fcs[0]))
        fcs.append(dict(fcs[0]))
    rewrite(bundle, manifest=triple)
    fails(bundle, "has 3 FCs")


# -- architecture ----------------------------------------------------------------------------


def test_unknown_architecture(bundle):
    rewrite(bundle, manifest=lambda m: m["architecture"].update(name="resnet"))
    fails(bundle, "unknown architecture 'resnet'", "char_transformer")


def test_heads_must_divide_width(bundle):
    rewrite(bundle, manifest=lambda m: m["architecture"].update(n_heads=3))
    fails(bundle, "not divisible by n_heads=3")


def test_architecture_hyper_parameter_mismatch(bundle):
    rewrite(bundle, manifest=lambda m: m["architecture"].update(d_ff=32))
    fails(bundle, "blocks.0.ffn.fc1")


def test_missing_layer(bundle):
    rewrite(bundle, manifest=lambda m: m["linears"].pop("blocks.1.attn.v"))
    fails(bundle, "missing layers", "blocks.1.attn.v")


def test_unknown_rounding(bundle):
    rewrite(bundle, manifest=lambda m: m.update(rounding="stochastic"))
    fails(bundle, "rounding", "stochastic")


def test_mlp_layers_must_share_their_int8_tensors(tmp_path):
    directory = write(tiny_mlp(), tmp_path / "mlp")

    def shift_input(m):
        m["linears"]["fc2"]["fcs"][0]["input"]["zero_point"] += 1
    rewrite(directory, manifest=shift_input)
    fails(directory, "do not fit together", "must equal")


def test_hidden_mlp_layer_cannot_have_a_float_affine(tmp_path):
    directory = write(tiny_mlp(), tmp_path / "mlp")
    scale = np.ones(10, np.float32)

    def add_affine(t):
        t["fc1/channel_scale"], t["fc1/channel_offset"] = scale, 0 * scale
    rewrite(directory, manifest=lambda m: m["linears"]["fc1"].update(channel_affine=True), tensors=add_affine)
    fails(directory, "linears['fc1']", "per-channel output affine")


def test_reference_must_fit_the_model(transformer, tmp_path):
    x = token_inputs(transformer)
    bad = Reference(x.astype(np.int32) + 100, x.astype(np.int32) % 11, x.astype(np.int32) % 11, {}, "bad")
    directory = write(transformer, tmp_path / "b", reference=bad)
    fails(directory, REFERENCE, "token ids must lie in")


# -- signatures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys():
    signing = pytest.importorskip("fedlora.device_runtime.signing")
    pytest.importorskip("cryptography")
    return signing.generate_key_pair(), signing.generate_key_pair()


def test_signed_bundle_verifies(transformer, tmp_path, keys):
    (private, public), _ = keys
    directory = write(transformer, tmp_path / "b", sign_key_pem=private)
    assert (directory / SIGNATURE).stat().st_size == 64
    assert load_device_bundle(directory, public).signature == "verified"
    assert load_device_bundle(directory).signature == "unchecked"


def test_signature_by_another_key_fails(transformer, tmp_path, keys):
    (private, _), (_, other_public) = keys
    directory = write(transformer, tmp_path / "b", sign_key_pem=private)
    fails(directory, SIGNATURE, "does not match", key=other_public)


def test_manifest_edited_after_signing_fails(transformer, tmp_path, keys):
    (private, public), _ = keys
    directory = write(transformer, tmp_path / "b", sign_key_pem=private)
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["provenance"]["client"] = "someone else"
    (directory / MANIFEST).write_text(json.dumps(manifest))
    fails(directory, SIGNATURE, "does not match", key=public)


def test_key_given_but_bundle_unsigned(bundle, keys):
    (_, public), _ = keys
    fails(bundle, "no manifest.sig", key=public)


def test_not_a_key(transformer, tmp_path, keys):
    (private, _), _ = keys
    directory = write(transformer, tmp_path / "b", sign_key_pem=private)
    fails(directory, "not a PEM public key", key=b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
