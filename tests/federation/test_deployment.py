"""The Deployment Engine path: a real SuperLink and SuperNodes (as on Raspberry Pis), on
localhost, running the same apps; each node installs its own verified copy of the base."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedlora.simulations.flwr_run import main

REPOSITORY = Path(__file__).resolve().parents[2]
NODES = 3

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_line(path: Path, needle: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and needle in path.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} not in {path} after {timeout} s:\n{path.read_text(errors='replace')[-2000:]}")


@pytest.fixture
def federation(tmp_path, monkeypatch):
    if not (REPOSITORY / "pyproject.toml").is_file():
        pytest.skip("needs the source checkout")
    bin_dir = Path(sys.executable).parent
    home = tmp_path / "flwr-home"
    home.mkdir()
    # the SuperLink and SuperNodes keep their apps under FLWR_HOME: their own, not ~/.flwr,
    # which every other checkout's run on this machine would share
    env = dict(os.environ, FLWR_HOME=str(home), FLWR_TELEMETRY_ENABLED="0", PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    port = free_port()
    (home / "config.toml").write_text(f'[superlink]\ndefault = "lab"\n\n[superlink.lab]\naddress = "127.0.0.1:{port}"\ninsecure = true\n')
    processes = []
    try:
        log = tmp_path / "superlink.log"
        processes.append(subprocess.Popen([bin_dir / "flower-superlink", "--insecure", "--port", str(port)], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env))
        wait_for_line(log, "Uvicorn running")
        for node in range(NODES):
            node_log = tmp_path / f"node{node}.log"
            node_config = f"partition-id={node} cache-dir='{tmp_path / f'node{node}-cache'}' state-dir='{tmp_path / f'node{node}-state'}'"
            command = [bin_dir / "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{port}", "--port", str(free_port()), "--node-config", node_config]
            processes.append(subprocess.Popen(command, stdout=node_log.open("w"), stderr=subprocess.STDOUT, env=env))
            wait_for_line(node_log, "Starting Flower SuperExec")
        monkeypatch.setenv("FLWR_HOME", str(home))
        yield tmp_path
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def test_a_run_on_superlink_and_supernodes_completes(federation):
    out = federation / "out"
    arguments = [
        "--app", str(REPOSITORY), "--superlink", "lab", "--nodes", str(NODES), "--timeout", "600",
        "-c", f"clients={NODES}", "-c", "task='digits'", "-c", "rounds=2", "-c", "fraction=1.0",
        "-c", "pretrain-steps=100", "-c", "heal-steps=10", "-c", "local-steps=5",
        "-c", f"out='{out}'", "-c", f"cache-dir='{federation / 'server-cache'}'",
    ]  # fmt: skip
    assert main(arguments) == 0
    summary = json.loads((out / "fedit" / "summary.json").read_text())
    assert summary["final"]["accepted"] == NODES
    assert summary["bundle_bytes_total"] == NODES * summary["base"]["bytes"]
    for node in range(NODES):
        received = list((federation / f"node{node}-cache" / "received").iterdir())
        assert [path.name for path in received] == [summary["base"]["id"]]
        assert list((federation / f"node{node}-state").glob("*.safetensors")), "client state kept on the node"
