"""The printed commands: only flags the installed Flower accepts, values its parsers read back."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from fedlora.deploy.commands import connection_toml, register_argv, render, superlink_argv, supernode_line
from fedlora.deploy.plan import plan_deployment
from fedlora.deploy.supernode import supernode_argv, supernode_environment
from fedlora.errors import FedloraError

pytest.importorskip("flwr")
BIN = Path(sys.executable).parent
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def help_flags(*command: str) -> tuple[set[str], str]:
    """The --flags a command's --help lists (Flower's argparse and typer/rich help alike)."""
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", TERM="dumb", FLWR_TELEMETRY_ENABLED="0")
    done = subprocess.run([str(BIN / command[0]), *command[1:], "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(FLAG.findall(done.stdout)), done.stdout


def flags(argv: list[str]) -> set[str]:
    return {argument for argument in argv if argument.startswith("--")}


def test_superlink_flags_are_in_its_help_and_its_parser_reads_them(make_deployment):
    from flwr.superlink.cli.flower_superlink import _parse_args_run_superlink

    deployment = make_deployment(hosts=["192.168.1.10"])
    argv = superlink_argv(deployment)
    known, _ = help_flags("flower-superlink")
    assert flags(argv) <= known, flags(argv) - known
    parsed = _parse_args_run_superlink().parse_args(argv[1:])
    tls = deployment.tls
    assert (parsed.ssl_ca_certfile, parsed.ssl_certfile, parsed.ssl_keyfile) == (str(tls.ca_cert), str(tls.server_cert), str(tls.server_key))
    assert parsed.enable_supernode_auth and not parsed.insecure
    assert parsed.runtime_dependency_install is False
    assert (parsed.host, parsed.port) == ("0.0.0.0", 8000)
    assert parsed.database == str(deployment.flwr_home / "superlink.db")


def test_supernode_flags_are_in_its_help_and_its_parser_reads_them(make_deployment):
    from flwr.common.config import parse_config_args
    from flwr.supernode.cli.flower_supernode import _parse_args_run_supernode

    deployment = make_deployment(hosts=["superlink.lan"], device_dir="/opt/fedlora")
    known, _ = help_flags("flower-supernode")
    for index, node in enumerate(deployment.nodes):
        argv = supernode_argv(deployment, node)
        assert argv[0] == "/opt/fedlora/venv/bin/fedlora-node"  # takes flower-supernode's arguments
        assert flags(argv) <= known, flags(argv) - known
        parsed = _parse_args_run_supernode().parse_args(argv[1:])
        assert parsed.superlink == "superlink.lan:8000" and not parsed.insecure
        assert parsed.root_certificates == "/opt/fedlora/ca.crt"
        assert parsed.auth_supernode_private_key == f"/opt/fedlora/{node.name}.key"
        assert parsed.port == 9094 + index  # distinct: nodes may share a host
        assert parse_config_args([parsed.node_config]) == {
            "partition-id": index, "state-dir": f"/opt/fedlora/{node.name}/state", "cache-dir": f"/opt/fedlora/{node.name}/cache",
        }  # fmt: skip
        environment = supernode_environment(deployment, node)
        assert environment["PATH"].split(":")[0] == "/opt/fedlora/venv/bin"  # flower-supernode finds flower-superexec
        assert environment["FLWR_HOME"] == f"/opt/fedlora/{node.name}/flwr-home"


def test_a_device_profile_goes_into_every_node_config(make_deployment):
    from flwr.common.config import parse_config_args
    from flwr.supernode.cli.flower_supernode import _parse_args_run_supernode

    deployment = make_deployment(profile="rpi-zero-2w-headless")
    for node in deployment.nodes:
        parsed = _parse_args_run_supernode().parse_args(supernode_argv(deployment, node)[1:])
        assert parse_config_args([parsed.node_config])["profile"] == "rpi-zero-2w-headless"
    with pytest.raises(FedloraError, match="name a built-in device profile"):
        plan_deployment(deployment.tls, deployment.nodes, profile='pi" x=1')


def test_register_uses_the_arguments_flwr_supernode_register_takes(make_deployment):
    deployment = make_deployment()
    known, text = help_flags("flwr", "supernode", "register")
    assert re.search(r"Usage: flwr supernode register \[OPTIONS\] PUBLIC_KEY \[SUPERLINK\]", text), text
    for node in deployment.nodes:
        argv = register_argv(deployment, node)
        assert argv[:5] == ["flwr", "supernode", "register", str(node.public_key), "fedlora"]
        assert flags(argv) <= known, flags(argv) - known


def test_the_connection_entry_is_what_flwr_reads(make_deployment, monkeypatch):
    from flwr.cli.constant import DEFAULT_FLOWER_CONFIG_TOML
    from flwr.cli.flower_config import read_superlink_connection

    deployment = make_deployment(hosts=["192.168.1.10"])
    lines = render(deployment).splitlines()
    start, end = (next(i for i, line in enumerate(lines) if line.startswith(mark)) for mark in ("# 2.", "# 3."))
    step = lines[start + 1 : end]
    # run the printed lines as they are, over the config.toml Flower writes by default
    deployment.flwr_home.mkdir()
    (deployment.flwr_home / "config.toml").write_text(DEFAULT_FLOWER_CONFIG_TOML)
    subprocess.run(["bash", "-euc", "\n".join(step)], check=True, timeout=30)
    monkeypatch.setenv("FLWR_HOME", str(deployment.flwr_home))
    connection = read_superlink_connection("fedlora")
    assert connection.address == "192.168.1.10:8000"
    assert connection.root_certificates == str(deployment.tls.ca_cert) and not connection.insecure
    assert read_superlink_connection(None).name == "local", "Flower's own default connection is untouched"
    assert "[superlink.fedlora]" in connection_toml(deployment)


def test_the_printed_lines_are_the_checked_commands(make_deployment):
    deployment = make_deployment(hosts=["192.168.1.10"], device_user="pi")
    lines = render(deployment).splitlines()
    assert shlex.join(superlink_argv(deployment)) in lines
    for node in deployment.nodes:
        assert shlex.join(register_argv(deployment, node)) in lines
        line = f"sudo -u pi {supernode_line(deployment, node)}"
        assert line in lines
        words = shlex.split(line)
        environment = dict(word.split("=", 1) for word in words[4:7])
        assert environment == supernode_environment(deployment, node)
        assert words[7:] == supernode_argv(deployment, node)
