"""The int8 parts of real exported models, replayed by the oracles: 0 mismatches.

Test vectors are the int8 activations each chain saw while the numpy runtime ran the
exported bundle on its client's test data. The C reference is compiled from the export's
own ``c/`` folder (header + the copied fedlora_fc.c); the TFLM interpreter runs a
``.tflite`` of the same chains, and the exported ``.tflite`` file itself (batch 1).
"""

from __future__ import annotations

import numpy as np
import pytest

from oracles import build_c_harness, chain_vectors, find_compiler, run_c, run_tflm, tflm_outputs

from fedlora.device_runtime import load_device_bundle
from fedlora.export.personalized import ExportOptions, export_run


@pytest.fixture(scope="module", params=["textlm", "digits"])
def exported(request, tmp_path_factory):
    """(bundle, export result, test vectors) of an exported textlm and digits model."""
    run = request.getfixturevalue(f"{request.param}_run")
    result = export_run(run, ExportOptions(out=tmp_path_factory.mktemp(f"{request.param}_oracle")), partition=0)
    bundle = load_device_bundle(result.bundle_dir)
    return bundle, result, chain_vectors(bundle.model, bundle.reference.inputs)


def test_numpy_matches_c_reference_on_the_exported_header(exported, tmp_path):
    if find_compiler() is None:
        pytest.skip("no C compiler (cc, gcc or clang) on PATH: cannot build the C reference")
    bundle, result, vectors = exported
    binary = build_c_harness(result.header.parent, result.header, "fedlora_model", bundle.manifest["rounding"], tmp_path)
    total = 0
    for index, (name, chain) in enumerate(bundle.model.int8_chains().items()):
        x, expected_numpy = vectors[name]
        got_c = run_c(binary, index, x, chain.output_depth, tmp_path)
        mismatches = int((got_c != expected_numpy).sum())
        assert mismatches == 0, f"{name}: {mismatches} of {got_c.size} int8 outputs differ from C"
        total += got_c.size
    assert total > 0


def test_numpy_matches_tflm_on_the_exported_chains(exported):
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime", reason="tflite-micro is not installed")
    bundle, _, vectors = exported
    for name, got in tflm_outputs(bundle.model, vectors).items():
        expected = vectors[name][1][: len(got)]
        mismatches = int((got != expected).sum())
        assert mismatches == 0, f"{name}: {mismatches} of {got.size} int8 outputs differ from TFLM"


def test_exported_tflite_file_runs_in_tflm(exported):
    """The file `fedlora export` wrote (batch 1): one row through every chain at once."""
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime", reason="tflite-micro is not installed")
    bundle, result, vectors = exported
    chains = bundle.model.int8_chains()
    for row in (0, 1, 7):
        outputs = run_tflm(result.tflite.read_bytes(), [vectors[name][0][row : row + 1] for name in chains])
        for name, got in zip(chains, outputs):
            np.testing.assert_array_equal(got, vectors[name][1][row : row + 1], err_msg=name)


def test_vectors_exercise_the_int8_range(exported):
    """Guard against vacuous passes: real activations use much of the int8 range."""
    _, _, vectors = exported
    for name, (x, out) in vectors.items():
        assert len(x) >= 8, name
        assert np.ptp(x.astype(int)) > 64 and np.ptp(out.astype(int)) > 16, name
