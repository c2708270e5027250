"""The printed deployment, for real on 127.0.0.1: a SuperLink with TLS and SuperNode
authentication, a registered node that connects, and an unregistered node that is refused.

Every process is started in its own session and stopped by its PID (and then its process
group, which holds the `flower-superexec` it started) in a `finally`, also on failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedlora.deploy.commands import register_argv, superlink_argv
from fedlora.deploy.loopback import TIMEOUT, free_port, free_ports, provision, stop, wait_for
from fedlora.deploy.supernode import supernode_argv, supernode_environment

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


@pytest.fixture
def deployment(make_deployment, device_venv, tmp_path):
    """Keys for two nodes; the 'device' is a folder here, provisioned as the printed lines say."""
    port = free_port()
    deployment = make_deployment(
        nodes=["registered", "stranger"],
        superlink=f"127.0.0.1:{port}",
        device_dir=str(tmp_path / "device"),
        device_venv=device_venv,
        first_runtime_port=free_ports(2),
    )
    provision(deployment)
    return deployment


def test_a_registered_node_connects_and_an_unregistered_one_is_refused(deployment, tmp_path):
    server_env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", FLWR_HOME=str(deployment.flwr_home), FLWR_TELEMETRY_ENABLED="0")
    registered, stranger = deployment.nodes
    processes: list[subprocess.Popen] = []

    def start(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
        argv = [str(BIN / argv[0]) if not os.path.isabs(argv[0]) else argv[0], *argv[1:]]
        process = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
        processes.append(process)
        return process

    def flwr(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "flwr"), *args], env=server_env, capture_output=True, text=True, timeout=TIMEOUT)

    try:
        superlink_log = tmp_path / "superlink.log"
        superlink = start(superlink_argv(deployment), superlink_log, server_env)
        wait_for(superlink_log, f"Uvicorn running on https://127.0.0.1:{deployment.port}", superlink)

        done = flwr(*register_argv(deployment, registered)[1:])
        assert done.returncode == 0 and "registered successfully" in done.stdout, done.stdout + done.stderr

        def node_env(node):
            return dict(os.environ, **supernode_environment(deployment, node))

        good_log = tmp_path / "registered.log"
        good = start(supernode_argv(deployment, registered), good_log, node_env(registered))
        wait_for(good_log, "SuperNode ID:", good)
        wait_for(good_log, "fedlora-node: the ClientApp runs in this process", good)

        bad_log = tmp_path / "stranger.log"
        bad = start(supernode_argv(deployment, stranger), bad_log, node_env(stranger))
        assert bad.wait(timeout=TIMEOUT) != 0, bad_log.read_text()
        assert "Exit Code: 305" in bad_log.read_text() and "Failed to activate SuperNode" in bad_log.read_text()
        assert "No SuperNode found with the given public key" in superlink_log.read_text()

        listing = flwr("supernode", "ls", deployment.connection, "--format", "json")
        nodes = json.loads(listing.stdout)["nodes"]
        assert [node["status"] for node in nodes] == ["online"], nodes
        assert good.poll() is None, good_log.read_text()
        assert "FileNotFoundError" not in good_log.read_text()
    finally:
        for process in reversed(processes):
            stop(process)
