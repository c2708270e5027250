"""The device runtime imports numpy and nothing of torch, flwr or the fedlora core.

A fresh interpreter installs a ``sys.meta_path`` finder that makes importing torch, flwr
or any ``fedlora.*`` module outside ``fedlora.device_runtime`` raise ``ImportError``,
then imports the runtime, runs an FC chain, exports a C header, and writes, loads and
runs a whole-model device bundle. On a device those packages are simply absent; this
test makes them absent here.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import importlib.abc
    import sys

    BLOCKED_TOP = {"torch", "flwr", "ray", "safetensors", "sklearn", "typer", "rich"}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.split(".")[0]
            core = (top == "fedlora" and name != "fedlora"
                    and not name.startswith("fedlora.device_runtime"))
            if top in BLOCKED_TOP or core:
                raise ImportError(f"blocked for the device runtime: {name}")
            return None

    sys.meta_path.insert(0, Blocker())

    # The blocker works: the core and torch are out of reach.
    for name in ("torch", "flwr", "fedlora.adapters", "fedlora.tasks"):
        try:
            __import__(name)
        except ImportError:
            pass
        else:
            raise SystemExit(f"blocker failed to block {name}")

    import numpy as np
    import fedlora.device_runtime as dr
    from fedlora.device_runtime.quantization import (
        dequantize_symmetric, quantize_symmetric, round_half_away)

    rng = np.random.default_rng(0)
    layer = dr.FactorizedLinear.from_float(
        rng.normal(size=(8, 3)), rng.normal(size=(3, 16)), rng.normal(size=8),
        rng.normal(size=(32, 16)))
    x = dr.quantize_activation(rng.normal(size=(4, 16)), layer.first.input_scale,
                               layer.first.input_zero_point)
    y = layer(x)
    assert y.dtype == np.int8 and y.shape == (4, 8)
    assert "fedlora_fc_params" in dr.render_c_header(layer.chain)

    # A whole model through its bundle: write, check, load, run (numpy and the stdlib only).
    import tempfile
    from fedlora.device_runtime.mlp import MLPConfig, MLPRuntime
    config = MLPConfig(in_features=6, hidden=(5,), num_classes=3)
    w1, w2 = rng.normal(size=(5, 6)), rng.normal(size=(3, 5))
    first = dr.quantize_linear([w1], np.zeros(5), [(0.0, 1.0), (0.0, 4.0)], "relu")
    head = dr.quantize_linear([w2], np.zeros(3), [(0.0, 4.0), (-9.0, 9.0)])
    model = MLPRuntime(config, {"fc1": dr.Int8Linear(dr.FullyConnectedChain(first)),
                                "head": dr.Int8Linear(dr.FullyConnectedChain(head))}, {})
    x = rng.uniform(0, 1, size=(4, 6))
    with tempfile.TemporaryDirectory() as directory:
        dr.write_device_bundle(directory + "/b", model, task={"name": "t"}, provenance={})
        bundle = dr.load_device_bundle(directory + "/b")
        assert np.array_equal(bundle.model(x), model(x))
    assert "cryptography" not in sys.modules  # only signing needs it, and lazily

    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED_TOP | {"fedlora"})
    print("\\n".join(loaded))
    """
)


def test_runtime_works_without_torch_flwr_or_core():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()
    assert loaded, "the script printed no module list"
    for name in loaded:
        assert name == "fedlora" or name.startswith("fedlora.device_runtime"), name
