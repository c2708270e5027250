"""``export_run`` end to end on small finished runs: what is written, what the bundle
holds, and how closely the int8 model follows the torch model it came from."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fedlora.adapters import set_merged
from fedlora.client_state import state_key
from fedlora.device_runtime import load_device_bundle
from fedlora.device_runtime.evaluation import agreement, predict_logits
from fedlora.errors import FedloraError
from fedlora.export.personalized import ExportOptions, export_run
from fedlora.export.run_source import choose_client, open_run, personalized_model
from fedlora.settings import FederationSettings


@pytest.fixture(scope="module")
def textlm_export(textlm_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("textlm_export")
    return export_run(textlm_run, ExportOptions(out=out), partition=0)


@pytest.fixture(scope="module")
def digits_export(digits_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("digits_export")
    return export_run(digits_run, ExportOptions(out=out), partition=0)


def test_export_writes_bundle_header_and_tflite(textlm_export):
    result = textlm_export
    assert sorted(p.name for p in result.bundle_dir.iterdir()) == ["manifest.json", "reference.safetensors", "weights.safetensors"]
    assert sorted(p.name for p in result.header.parent.iterdir()) == ["fedlora_fc.c", "fedlora_fc.h", "fedlora_model.h"]
    assert result.tflite.read_bytes()[4:8] == b"TFL3"
    header = result.header.read_text()
    assert "fedlora_model_chains[FEDLORA_MODEL_NUM_CHAINS]" in header and '"blocks.0.attn.q"' in header


def test_manifest_records_task_and_provenance(textlm_run, textlm_export):
    manifest = json.loads((textlm_export.bundle_dir / "manifest.json").read_text())
    summary = json.loads((textlm_run / "summary.json").read_text())
    assert manifest["architecture"] == {"name": "char_transformer", "vocab_size": 97, "context": 64, "d_model": 64,
                                        "n_layers": 2, "n_heads": 4, "d_ff": 256, "layer_norm_eps": 1e-05}
    assert manifest["task"]["fingerprint"] == summary["task"]["fingerprint"]
    assert manifest["task"]["primary_metric"] == "accuracy"
    provenance = manifest["provenance"]
    assert provenance["base_id"] == summary["base"]["id"]
    assert provenance["partition"] == 0 and provenance["client"].startswith("stdlib:")
    assert provenance["method"] == "fedit" and provenance["personal"] is True
    assert provenance["calibration"]["data"] == "client train split"
    assert provenance["calibration"]["weight_rounding"] == "gptq"
    assert manifest["rounding"] == "double"


def test_exported_model_is_the_personalized_one(textlm_run, textlm_export):
    """The bundle reproduces the torch model with the client's personal adapter merged in:
    its stored torch answers are that model's, and differ from the global-only model's."""
    source = open_run(textlm_run)
    choose_client(source, None, 0)
    personal = personalized_model(source)
    assert any("kept tensors" in note for note in source.notes)
    reference = load_device_bundle(textlm_export.bundle_dir).reference
    x = torch.from_numpy(reference.inputs.astype(np.int64))
    set_merged(personal, True)
    with torch.no_grad():
        np.testing.assert_array_equal(personal(x).argmax(-1).numpy(), reference.torch_predictions)
    global_only = open_run(textlm_run)
    with torch.no_grad():
        global_predictions = personalized_model(global_only)(x).argmax(-1).numpy()
    assert not np.array_equal(global_predictions, reference.torch_predictions)


def test_bundle_reproduces_the_export_figures(textlm_export):
    bundle = load_device_bundle(textlm_export.bundle_dir)
    logits = predict_logits(bundle.model, bundle.reference.inputs)
    assert agreement(logits.argmax(-1), bundle.reference.torch_predictions) == textlm_export.agreement
    assert bundle.model.flash_bytes() == textlm_export.flash


# Top-1 agreement of int8 with float predictions. Every int8 activation is rounded at a
# step of its range / 255, and 5–10% of these models' next-character predictions have their
# two best logits closer than the error that leaves on the logits, so some disagreement is
# inherent to int8 activations; how much depends on how decided the model is. Measured
# (figures in fedlora.export.convert): 99.4% on this small setup; on six clients of the
# full-size default run 96.3–97.2% (96.0–96.8% before input folding, balanced
# intermediates and GPTQ), accuracy within 0.7 points. The 99% holds on the MLP
# tasks; on the full-size textlm it needs 16-bit activations (about 99.1% simulated).
TEXTLM_AGREEMENT = 0.99
MLP_AGREEMENT = 0.99


def test_int8_agrees_with_torch_on_the_default_task(textlm_export):
    result = textlm_export
    assert result.examples > 0
    assert result.agreement >= TEXTLM_AGREEMENT, result.agreement
    assert abs(result.int8_metrics["accuracy"] - result.torch_metrics["accuracy"]) < 0.01
    assert abs(result.int8_metrics["loss"] - result.torch_metrics["loss"]) < 0.02


def test_int8_agrees_with_torch_on_an_mlp_task(digits_export):
    assert digits_export.agreement >= MLP_AGREEMENT, digits_export.agreement
    manifest = json.loads((digits_export.bundle_dir / "manifest.json").read_text())
    assert manifest["architecture"]["name"] == "mlp"
    assert list(load_device_bundle(digits_export.bundle_dir).model.int8_chains()) == ["mlp"]


def test_fedsa_client_keeps_its_b(digits_run):
    source = open_run(digits_run)
    choose_client(source, None, 0)
    personalized_model(source)
    assert any("digits:0" in note and "2 kept tensors" in note for note in source.notes), source.notes


def test_base_only_export_is_calibrated_on_public_data(textlm_run, tmp_path):
    result = export_run(textlm_run, ExportOptions(out=tmp_path, reference=False, calibration_samples=32,
                                                            reference_limit=16), base_only=True)
    manifest = json.loads((result.bundle_dir / "manifest.json").read_text())
    assert manifest["provenance"]["base_only"] is True and manifest["provenance"]["client"] is None
    assert manifest["provenance"]["calibration"]["data"] == "public train split"
    assert "reference" not in manifest and load_device_bundle(result.bundle_dir).reference is None


@pytest.mark.parametrize("kwargs, fragment", [
    ({}, "choose what to export"),
    ({"client": "stdlib:nope"}, "has no client 'stdlib:nope'"),
    ({"partition": 99}, "outside 0..2"),
    ({"client": "x", "partition": 0}, "not both"),
])
def test_bad_client_choice(textlm_run, tmp_path, kwargs, fragment):
    with pytest.raises(FedloraError, match=fragment):
        export_run(textlm_run, ExportOptions(out=tmp_path), **kwargs)


def test_run_folder_of_an_invocation_points_to_its_runs(textlm_run, tmp_path):
    (textlm_run.parent / "summary.json").write_text(json.dumps({"runs": [], "comparison": []}))
    with pytest.raises(FedloraError, match="its runs are"):
        open_run(textlm_run.parent)


def test_base_missing_from_the_cache(textlm_run, tmp_path):
    with pytest.raises(FedloraError, match="not in the cache"):
        open_run(textlm_run, cache_dir=tmp_path)


@pytest.mark.parametrize("changes, fragment", [
    ({"calibration": "private"}, "--calibration"),
    ({"calibration_samples": 0}, "--calibration-samples"),
    ({"rounding": "stochastic"}, "--rounding"),
    ({"weight_rounding": "stochastic"}, "weight rounding"),
    ({"name": "1bad-name"}, "C identifier"),
    ({"sign_key_pem": b"not a key"}, "--sign-key"),
])
def test_bad_export_options(tmp_path, changes, fragment):
    with pytest.raises(FedloraError, match=fragment):
        ExportOptions(out=tmp_path, **changes)


def test_flexlora_global_update_becomes_rank_r_factors(textlm_run, tmp_path):
    """A flexlora run stores ΔW = s·B·A per layer; export truncates it back to rank-r
    factors by SVD, which reproduce a rank-r ΔW exactly."""
    import shutil

    from safetensors.numpy import load_file, save_file

    out = tmp_path / "out"
    shutil.copytree(textlm_run.parent, out)
    run = out / "flexlora"
    (out / "fedit").rename(run)
    summary = json.loads((run / "summary.json").read_text())
    summary["settings"].update(method="flexlora", **{"run-name": ""})
    scaling = summary["settings"]["alpha"] / summary["settings"]["rank"]
    (run / "summary.json").write_text(json.dumps(summary))
    # the client's state, as the flexlora run would have filed it
    keys = [state_key(FederationSettings.from_run_config(s["settings"]), s["base"]["id"]) for s in (json.loads((textlm_run / "summary.json").read_text()), summary)]
    (out / "client-state" / "flexlora").mkdir()
    (out / "client-state" / "fedit" / keys[0]).rename(out / "client-state" / "flexlora" / keys[1])
    fedit_global = load_file(run / "global.safetensors")
    deltas = {
        key.removesuffix(".adapters.global.lora_A") + ".delta":
            scaling * fedit_global[key.replace("lora_A", "lora_B")] @ fedit_global[key]
        for key in fedit_global if key.endswith("lora_A")
    }
    save_file(deltas, run / "global.safetensors")

    fedit, flexlora = open_run(textlm_run), open_run(run)
    for source in (fedit, flexlora):
        choose_client(source, None, 0)
    fedit_model, flexlora_model = personalized_model(fedit), personalized_model(flexlora)
    for model in (fedit_model, flexlora_model):
        set_merged(model, True)
    for layer in (key.removesuffix(".delta") for key in deltas):
        expected, got = (model.get_submodule(layer).base.dense_weight() for model in (fedit_model, flexlora_model))
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
