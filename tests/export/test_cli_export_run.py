"""``fedlora export`` and ``fedlora run`` from the command line: the user paths, and bad
arguments refused with a message that says what to do (exit status 2 from ``main``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fedlora.cli.app import app
from fedlora.errors import FedloraError

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=True)


def refused(result, fragment: str) -> None:
    assert isinstance(result.exception, FedloraError), (result.exception, result.output)
    assert fragment in str(result.exception), str(result.exception)


def run_main(*args: str, block: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``fedlora`` in a fresh interpreter, optionally with some packages made unimportable."""
    script = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {block!r}:
                    raise ImportError(f"No module named {{name!r}} (blocked)")
        sys.meta_path.insert(0, Block())
        sys.argv = ["fedlora"] + sys.argv[1:]
        from fedlora.cli.app import main
        main()
    """)
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """A key pair from `fedlora keys generate`, as a user makes one."""
    folder = tmp_path_factory.mktemp("keys") / "signing"
    result = invoke("keys", "generate", "--out", folder)
    assert result.exit_code == 0, result.output
    assert (folder / "export.key").stat().st_mode & 0o777 == 0o600
    return folder / "export.key", folder / "export.pub"


@pytest.fixture(scope="module")
def exported(textlm_run, keys, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli_export")
    result = invoke("export", "--run", textlm_run, "--partition", 1, "--out", out, "--sign-key", keys[0],
                    "--calibration-samples", 64)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "top-1 agreement with torch" in result.output and "flash: total" in result.output
    assert "RAM: peak activations" in result.output
    return out / "bundle"


# -- the user paths -------------------------------------------------------------------------


def test_run_on_the_bundles_test_data_reports_metric_and_agreement(exported, keys):
    result = invoke("run", exported, "--public-key", keys[1])
    assert result.exit_code == 0, result.output
    assert "signature verified" in result.output
    assert "accuracy (primary)" in result.output and "top-1 agreement with torch" in result.output
    assert "n/a" not in result.output


def test_run_on_a_npy_slice_of_the_test_data(exported, tmp_path):
    from fedlora.device_runtime import load_device_bundle

    reference = load_device_bundle(exported).reference
    np.save(tmp_path / "x.npy", reference.inputs[3:9].astype(np.int64))
    np.save(tmp_path / "y.npy", reference.targets[3:9])
    result = invoke("run", exported, "--inputs", tmp_path / "x.npy", "--targets", tmp_path / "y.npy",
                    "--predictions", tmp_path / "p.npy", "--unverified")
    assert result.exit_code == 0, result.output
    assert "top-1 agreement with torch" in result.output and "n/a" not in result.output
    assert np.load(tmp_path / "p.npy").shape == (6, 64)


def test_run_on_new_inputs_has_no_torch_answer(exported, tmp_path):
    np.save(tmp_path / "x.npy", np.full((2, 10), 5, dtype=np.int32))
    result = invoke("run", exported, "--inputs", tmp_path / "x.npy", "--unverified")
    assert result.exit_code == 0, result.output
    assert "agreement with torch: n/a" in result.output


def test_run_works_with_numpy_alone(exported, tmp_path):
    """The base install: no torch, flwr, safetensors or flatbuffers."""
    np.save(tmp_path / "x.npy", np.arange(40, dtype=np.int64).reshape(2, 20) % 97)
    done = run_main("run", exported, "--inputs", tmp_path / "x.npy", "--unverified",
                    block=("torch", "flwr", "ray", "safetensors", "flatbuffers", "sklearn"))
    assert done.returncode == 0, done.stderr
    assert "2 examples" in done.stdout


def test_a_bundle_run_without_a_verified_signature_exits_4_and_says_so(exported, keys, monkeypatch):
    done = run_main("run", exported)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "signature not verified (unchecked)" in " ".join(done.stderr.split()) and "--public-key" in done.stderr
    accepted = run_main("run", exported, "--unverified")
    assert accepted.returncode == 0 and "signature not verified" in " ".join(accepted.stderr.split())
    monkeypatch.setenv("FEDLORA_PUBLIC_KEY", str(keys[1]))  # a key configured once on the device
    verified = run_main("run", exported)
    assert verified.returncode == 0 and "signature verified" in verified.stdout and "not verified" not in verified.stderr


# -- refusals, through main(): exit status 2, one message ------------------------------------


def test_export_of_a_folder_without_a_run_exits_2(tmp_path):
    done = run_main("export", "--run", tmp_path, "--partition", "0")
    assert done.returncode == 2
    assert done.stderr.count("error:") == 1 and "has no summary.json" in done.stderr


def test_run_of_a_folder_without_a_bundle_exits_2(tmp_path):
    done = run_main("run", tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("error:") == 1 and "is not a device bundle" in done.stderr


@pytest.mark.parametrize("args, fragment", [
    ((), "choose what to export"),
    (("--client", "stdlib:json", "--partition", "0"), "not both"),
    (("--client", "stdlib:nope"), "has no client 'stdlib:nope'"),
    (("--partition", "7"), "outside 0..2"),
    (("--partition", "0", "--rounding", "nearest"), "--rounding must be one of"),
    (("--partition", "0", "--calibration", "mine"), "--calibration must be one of"),
    (("--partition", "0", "--name", "my-model"), "C identifier"),
    (("--partition", "0", "--sign-key", "/nonexistent/key.pem"), "cannot read the key file"),
])
def test_export_refuses_bad_arguments(textlm_run, tmp_path, args, fragment):
    refused(invoke("export", "--run", textlm_run, "--out", tmp_path, *args), fragment)


def test_export_refuses_a_key_that_is_not_ed25519(textlm_run, tmp_path):
    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    refused(invoke("export", "--run", textlm_run, "--partition", 0, "--sign-key", tmp_path / "key.pem"), "--sign-key")


def test_run_refuses_targets_without_inputs(exported, tmp_path):
    refused(invoke("run", exported, "--targets", tmp_path / "y.npy"), "give --inputs too")


def test_run_refuses_inputs_of_the_wrong_shape(exported, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 4), dtype=np.int64))
    refused(invoke("run", exported, "--inputs", tmp_path / "x.npy"), "token ids of shape (N, T)")


def test_run_refuses_out_of_vocabulary_tokens(exported, tmp_path):
    np.save(tmp_path / "x.npy", np.full((1, 4), 500, dtype=np.int64))
    refused(invoke("run", exported, "--inputs", tmp_path / "x.npy"), "token ids must lie in [0, 97)")


def test_run_never_unpickles(exported, tmp_path):
    np.save(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    refused(invoke("run", exported, "--inputs", tmp_path / "x.npy"), "not a plain .npy array")


def test_run_refuses_targets_that_do_not_fit(exported, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 5), dtype=np.int64))
    np.save(tmp_path / "y.npy", np.zeros((3, 5), dtype=np.int64))
    refused(invoke("run", exported, "--inputs", tmp_path / "x.npy", "--targets", tmp_path / "y.npy"),
            "must be integers of shape (2, 5)")


def test_run_refuses_a_tampered_bundle(exported, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(exported, copy)
    data = bytearray((copy / "weights.safetensors").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "weights.safetensors").write_bytes(bytes(data))
    refused(invoke("run", copy), "SHA-256")


def test_run_refuses_a_bundle_signed_by_someone_else(exported, tmp_path):
    from fedlora.device_runtime.signing import generate_key_pair

    (tmp_path / "other.pub").write_bytes(generate_key_pair()[1])
    refused(invoke("run", exported, "--public-key", tmp_path / "other.pub"), "does not match")


def test_run_without_stored_test_data_rebuilds_the_clients_split(digits_run, tmp_path):
    """--no-reference: `fedlora run` loads the task (torch) for the client's test split."""
    result = invoke("export", "--run", digits_run, "--partition", 2, "--out", tmp_path, "--no-reference")
    assert result.exit_code == 0, result.output
    result = invoke("run", tmp_path / "bundle", "--unverified")
    assert result.exit_code == 0, result.output
    assert "client digits:2 test split" in result.output and "accuracy (primary)" in result.output
    assert "agreement with torch: n/a" in result.output
