"""The exact lines that run a deployment: SuperLink, ``flwr`` CLI, SuperNodes.

Each command is built as an argument list (what tests run and check against Flower's own
parsers) and printed with shell quoting. Every flag used here is one the Flower 1.42
commands list in their ``--help``; ``tests/deploy/test_commands.py`` checks that against
the installed Flower.
"""

from __future__ import annotations

import json
import shlex

from fedlora.deploy.node_keys import NodeKey
from fedlora.deploy.plan import Deployment
from fedlora.deploy.supernode import supernode_argv, supernode_environment
from fedlora.deploy.systemd import supernode_unit, unit_name


def superlink_argv(deployment: Deployment) -> list[str]:
    """``flower-superlink`` with TLS, SuperNode authentication and no dependency installation.

    One port serves the Fleet API (SuperNodes), the Control API (``flwr``) and the Runtime
    API (the ServerApp). Runtime dependency installation is on by default in 1.42 and runs
    ``uv sync`` for every run, which fails offline and is not wanted: fedlora is installed.
    Registered node keys live in ``--database``, so they survive a SuperLink restart.
    """
    tls = deployment.tls
    return [
        "flower-superlink",
        "--ssl-ca-certfile", str(tls.ca_cert),
        "--ssl-certfile", str(tls.server_cert),
        "--ssl-keyfile", str(tls.server_key),
        "--enable-supernode-auth",
        "--disable-runtime-dependency-installation",
        "--host", str(deployment.bind_host),
        "--port", str(deployment.port),
        "--database", str(deployment.database),
    ]  # fmt: skip


def connection_toml(deployment: Deployment) -> str:
    """The SuperLink connection for ``$FLWR_HOME/config.toml`` (``root-certificates`` is absolute).

    Only the connection's own table: appended to any config.toml (Flower writes a default
    one with its own ``[superlink]`` table) it stays valid. Commands name it explicitly.
    """
    return (
        f"[superlink.{deployment.connection}]\n"
        f"address = {json.dumps(deployment.superlink_address)}\n"
        f"root-certificates = {json.dumps(str(deployment.tls.ca_cert))}\n"
    )


def register_argv(deployment: Deployment, node: NodeKey) -> list[str]:
    """``flwr supernode register``: let this node's key in (the SuperLink must be running)."""
    return ["flwr", "supernode", "register", str(node.public_key), deployment.connection, "--name", node.name]


def supernode_line(deployment: Deployment, node: NodeKey) -> str:
    environment = [f"{key}={value}" for key, value in supernode_environment(deployment, node).items()]
    return shlex.join(["env", *environment, *supernode_argv(deployment, node)])


def _heredoc(command: str, text: str, delimiter: str) -> list[str]:
    assert delimiter not in text.splitlines()
    return [f"{command} <<'{delimiter}'", *text.rstrip("\n").splitlines(), delimiter]


def device_setup(deployment: Deployment, node: NodeKey) -> list[list[str]]:
    """Run on the device, as root, in a folder holding ``ca.crt`` and the node's key."""
    device, user = deployment.device, deployment.device.user
    folders = [str(device.state_dir(node)), str(device.cache_dir(node)), str(device.flwr_home(node))]
    return [
        ["install", "-D", "-m", "0644", "ca.crt", str(device.ca_cert)],
        ["install", "-D", "-o", user, "-g", user, "-m", "0600", node.private_key.name, str(device.private_key(node))],
        ["install", "-d", "-o", user, "-g", user, "-m", "0700", *folders],
    ]


def render(deployment: Deployment) -> str:
    """Everything to run, in order, as text to follow (``#`` lines are explanations)."""
    tls, device, nodes = deployment.tls, deployment.device, deployment.shown
    config = deployment.flwr_home / "config.toml"
    lines = [
        f"# fedlora deployment: SuperLink at {deployment.superlink_address} with TLS and SuperNode authentication, "
        f"{len(nodes)} node(s)",
        "",
        "# ── On the server, in the venv where fedlora[server] is installed ──",
        "# 1. Start the SuperLink and keep it running:",
        shlex.join(superlink_argv(deployment)),
        "",
        f"# 2. Add the flwr CLI's connection {deployment.connection!r} to {config}, and use that FLWR_HOME:",
        shlex.join(["export", f"FLWR_HOME={deployment.flwr_home}"]),
        shlex.join(["mkdir", "-p", str(deployment.flwr_home)]),
        *_heredoc(f"cat >> {shlex.quote(str(config))}", connection_toml(deployment), "TOML"),
        "",
        "# 3. Register each node's public key (once: the SuperLink keeps them in its --database), then list them:",
        *(shlex.join(register_argv(deployment, node)) for node in nodes),
        shlex.join(["flwr", "supernode", "ls", deployment.connection]),
    ]
    for node in nodes:
        unit = unit_name(node)
        lines += [
            "",
            f"# ── Device {node.name} (partition-id {node.partition_id}), with fedlora[client] installed in {device.venv} ──",
            f"# Copy {tls.ca_cert} and {node.private_key} into the current folder on the device, then, as root:",
            f"id -u {device.user} >/dev/null 2>&1 || "
            + shlex.join(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", device.user]),
            *(shlex.join(argv) for argv in device_setup(deployment, node)),
            f"rm {shlex.quote(node.private_key.name)}",
            "# Try it by hand (Ctrl-C to stop):",
            shlex.join(["sudo", "-u", device.user]) + " " + supernode_line(deployment, node),
            "# Run it as a service that restarts after failures and reboots:",
            *_heredoc(f"tee /etc/systemd/system/{unit} >/dev/null", supernode_unit(deployment, node), "UNIT"),
            f"systemctl daemon-reload && systemctl enable --now {unit}",
        ]
    lines += ["", "# Afterwards, delete the nodes' private keys (*.key) on the server: each belongs on its device only."]
    return "\n".join(lines) + "\n"
