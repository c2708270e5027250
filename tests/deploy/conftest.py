"""Fixtures for the deployment tests: credentials made once per test in its own folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fedlora.deploy.certificates import write_tls_files
from fedlora.deploy.node_keys import write_node_keys
from fedlora.deploy.plan import Deployment, plan_deployment


@pytest.fixture
def make_deployment(tmp_path):
    """``make_deployment(hosts=[...], nodes=[...], **plan options)`` -> a Deployment in tmp_path."""

    def make(hosts: list[str] | None = None, nodes: list[str] | None = None, **options) -> Deployment:
        tls = write_tls_files(tmp_path / "tls", hosts or [])
        keys = write_node_keys(tmp_path / "keys", nodes or ["node0", "node1"])
        options.setdefault("flwr_home", tmp_path / "flwr-home")
        return plan_deployment(tls, keys, **options)

    return make


@pytest.fixture
def device_venv() -> str:
    """The venv running the tests stands in for a device's venv: its bin/ has fedlora-node and flower-supernode."""
    return str(Path(sys.executable).parent.parent)
