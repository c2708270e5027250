"""The SuperNode's systemd unit: what makes it work on a device, and valid for systemd."""

from __future__ import annotations

import getpass
import shlex
import shutil
import subprocess

import pytest

from fedlora.deploy.supernode import supernode_argv
from fedlora.deploy.systemd import supernode_unit, unit_name


def settings(unit: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def test_the_unit_holds_what_a_device_needs(make_deployment):
    deployment = make_deployment(hosts=["192.168.1.10"], device_dir="/opt/fedlora", device_user="pi")
    node = deployment.nodes[1]
    unit = settings(supernode_unit(deployment, node))
    assert unit_name(node) == "fedlora-supernode-node1.service"
    (exec_start,) = unit["ExecStart"]
    argv = shlex.split(exec_start)  # systemd splits single-quoted words the same way
    assert argv == supernode_argv(deployment, node)
    assert argv[0] == "/opt/fedlora/venv/bin/fedlora-node"  # absolute
    environment = dict(value.split("=", 1) for value in unit["Environment"])
    assert environment["PATH"].startswith("/opt/fedlora/venv/bin:")  # flower-superexec is found by name
    assert environment["FLWR_HOME"] == "/opt/fedlora/node1/flwr-home"  # the service user's own, writable
    assert unit["Restart"] == ["always"]
    assert unit["User"] == ["pi"] and unit["WorkingDirectory"] == ["/opt/fedlora/node1/state"]
    assert "network-online.target" in unit["After"][0] and unit["WantedBy"] == ["multi-user.target"]


def test_the_restart_delay_is_longer_than_the_superlinks_heartbeat_timeout(make_deployment):
    from flwr.common.constant import HEARTBEAT_DEFAULT_INTERVAL, HEARTBEAT_PATIENCE

    deployment = make_deployment()
    (restart_sec,) = settings(supernode_unit(deployment, deployment.nodes[0]))["RestartSec"]
    assert int(restart_sec) > HEARTBEAT_PATIENCE * HEARTBEAT_DEFAULT_INTERVAL


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_accepts_the_unit(make_deployment, device_venv, tmp_path):
    # this venv stands in for the device's, so the program systemd checks exists
    deployment = make_deployment(device_dir=str(tmp_path / "device"), device_venv=device_venv, device_user=getpass.getuser())
    node = deployment.nodes[0]
    path = tmp_path / unit_name(node)
    path.write_text(supernode_unit(deployment, node))
    done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "quoting" not in done.stderr.lower() and "ignoring" not in done.stderr.lower(), done.stderr
