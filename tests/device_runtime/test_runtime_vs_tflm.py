"""numpy runtime vs the TFLM interpreter running the exported ``.tflite`` (the oracle).

The ``tflite-micro`` wheel runs TFLM's reference kernels, built with double rounding, so
only the double-rounding runtime is compared. 0 mismatches is the only pass.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fc_cases import edge_cases, random_chain, random_cases

from fedlora.device_runtime import FullyConnectedChain
from fedlora.export.tflite import build_tflite_model, write_tflite_model

runtime = pytest.importorskip(
    "tflite_micro.python.tflite_micro.runtime",
    reason="tflite-micro is not installed: the TFLM oracle is unavailable",
)

CASES = {**edge_cases(), **random_cases(seed=11, count=40)}


def run_tflm(chain: FullyConnectedChain, x: np.ndarray) -> np.ndarray:
    interpreter = runtime.Interpreter.from_bytes(build_tflite_model(chain, batch=x.shape[0]))
    interpreter.set_input(x, 0)
    interpreter.invoke()
    return interpreter.get_output(0)


@pytest.mark.parametrize("name", list(CASES))
def test_numpy_matches_tflm(name):
    specs, x = CASES[name]
    chain = FullyConnectedChain(specs, "double")
    expected = run_tflm(chain, x)
    got = chain(x)
    assert expected.dtype == np.int8 and expected.shape == got.shape
    mismatches = int((got != expected).sum())
    assert mismatches == 0, f"{name}: {mismatches} of {got.size} outputs differ from TFLM"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    widths=st.lists(st.integers(1, 48), min_size=2, max_size=5),
    batch=st.integers(1, 5),
)
def test_random_chains_match_tflm(seed, widths, batch):
    specs, x = random_chain(np.random.default_rng(seed), widths, batch=batch,
                            activations="random")
    chain = FullyConnectedChain(specs, "double")
    np.testing.assert_array_equal(chain(x), run_tflm(chain, x))


def test_tflite_file_follows_the_schema(tmp_path):
    """Read the file back with the schema module that ships in the tflite-micro wheel."""
    schema = pytest.importorskip("tflite_micro.tensorflow.lite.micro.python.schema_py_generated")
    specs, _ = edge_cases()["chain3"]
    chain = FullyConnectedChain(specs)
    path = write_tflite_model(chain, tmp_path / "chain.tflite", batch=3)
    data = path.read_bytes()
    assert data[4:8] == b"TFL3"
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    assert model.version == 3
    assert [c.builtinCode for c in model.operatorCodes] == [schema.BuiltinOperator.FULLY_CONNECTED]
    graph = model.subgraphs[0]
    assert len(graph.operators) == len(specs)
    assert list(graph.tensors[graph.inputs[0]].shape) == [3, chain.input_depth]
    assert list(graph.tensors[graph.outputs[0]].shape) == [3, chain.output_depth]
    for op, spec in zip(graph.operators, specs):
        assert op.builtinOptionsType == schema.BuiltinOptions.FullyConnectedOptions
        x, w, b = (graph.tensors[i] if i >= 0 else None for i in op.inputs)
        assert w.type == schema.TensorType.INT8
        assert w.quantization.quantizedDimension == 0
        np.testing.assert_array_equal(w.quantization.scale, np.ravel(spec.weight_scale))
        assert list(w.quantization.zeroPoint) == [0] * np.size(spec.weight_scale)
        weights = np.frombuffer(bytes(model.buffers[w.buffer].data), dtype=np.int8)
        np.testing.assert_array_equal(weights.reshape(spec.weights.shape), spec.weights)
        if spec.bias is None:
            assert b is None
        else:
            assert b.type == schema.TensorType.INT32
            bias = np.frombuffer(bytes(model.buffers[b.buffer].data), dtype="<i4")
            np.testing.assert_array_equal(bias, spec.bias)
        assert x.quantization.zeroPoint[0] == spec.input_zero_point


def test_per_channel_matters_to_tflm():
    """Guard against a vacuous pass: per-channel scales must change TFLM's output."""
    specs, x = edge_cases()["deep_per_channel"]
    chain = FullyConnectedChain(specs)
    spec = specs[0]
    flat = type(spec)(spec.weights, np.ravel(spec.weight_scale)[:1], spec.input_scale,
                      spec.input_zero_point, spec.output_scale, spec.output_zero_point,
                      spec.bias, spec.activation)
    assert not np.array_equal(run_tflm(chain, x), run_tflm(FullyConnectedChain([flat]), x))
