"""A systemd unit that keeps a SuperNode running on its device.

What makes it work, each learnt the hard way:

- absolute paths everywhere, and ``Environment=PATH=`` with the venv's ``bin`` first: the
  SuperNode starts ``flower-superexec`` by name; without it on PATH it logs
  ``FileNotFoundError: 'flower-superexec'`` and idles;
- ``FLWR_HOME`` in a folder the service user owns: Flower installs the ClientApp it
  receives there, and a system user has no home;
- ``Restart=always`` with ``RestartSec`` longer than the time the SuperLink takes to mark a
  vanished node offline (:data:`fedlora.deploy.flower.NODE_OFFLINE_AFTER_S`): restarted
  sooner, the node is refused ("Failed to activate SuperNode") and exits again;
- ``After=network-online.target time-sync.target``: SuperNode authentication signs a
  timestamp that the SuperLink accepts only if it is at most a few seconds ahead of its own
  clock, and a Raspberry Pi has no real-time clock.
"""

from __future__ import annotations

import re

from fedlora.deploy import flower
from fedlora.deploy.node_keys import NodeKey
from fedlora.deploy.plan import Deployment
from fedlora.deploy.supernode import supernode_argv, supernode_environment

_BARE = re.compile(r"^[A-Za-z0-9._+/:=@,\[\]-]+$")


def unit_name(node: NodeKey) -> str:
    return f"fedlora-supernode-{node.name}.service"


def _quote(argument: str) -> str:
    """One ExecStart= argument. Paths and names were checked in plan.py: no $, %, \\ or '."""
    if _BARE.match(argument):
        return argument
    assert not set("'\\$%\n") & set(argument), argument
    return f"'{argument}'"  # systemd keeps everything up to the next ' as one argument


def supernode_unit(deployment: Deployment, node: NodeKey) -> str:
    device = deployment.device
    environment = [f"Environment={key}={value}" for key, value in supernode_environment(deployment, node).items()]
    return "\n".join(
        [
            "[Unit]",
            f"Description=fedlora SuperNode {node.name} (partition {node.partition_id}) of the SuperLink at {deployment.superlink_address}",
            "Wants=network-online.target",
            "After=network-online.target time-sync.target",
            "",
            "[Service]",
            f"User={device.user}",
            f"Group={device.user}",
            f"WorkingDirectory={device.state_dir(node)}",
            *environment,
            "ExecStart=" + " ".join(_quote(argument) for argument in supernode_argv(deployment, node)),
            "Restart=always",
            f"# The SuperLink refuses this node's key until {flower.NODE_OFFLINE_AFTER_S} s after its last heartbeat",
            f"# (Flower 1.42: {flower.HEARTBEAT_PATIENCE} x {flower.HEARTBEAT_INTERVAL_S} s); restart only after that.",
            f"RestartSec={flower.RESTART_DELAY_S}",
            "",
            "[Install]",
            "WantedBy=multi-user.target",
            "",
        ]
    )
