"""A SuperNode on its device: its command line, node config and environment.

Shared by the line a user runs by hand and the systemd unit, so the two never differ.

The node runs ``fedlora-node`` (:mod:`fedlora.client.node`): Flower's SuperNode with
fedlora's ClientApp in the same process, which is what fits a Raspberry Pi Zero 2 W.
``flower-supernode`` takes the same arguments and starts a ClientApp process per message.
"""

from __future__ import annotations

from fedlora.deploy.node_keys import NodeKey
from fedlora.deploy.plan import Deployment


def node_config(deployment: Deployment, node: NodeKey) -> str:
    """The ``--node-config`` value fedlora's ClientApp reads: partition, state and cache
    folders, and the device profile when there is one."""
    device = deployment.device
    profile = f' profile="{device.profile}"' if device.profile else ""
    return f'partition-id={node.partition_id} state-dir="{device.state_dir(node)}" cache-dir="{device.cache_dir(node)}"{profile}'


def supernode_environment(deployment: Deployment, node: NodeKey) -> dict[str, str]:
    """The environment a SuperNode needs on its device.

    PATH: ``flower-supernode`` starts ``flower-superexec`` by name, so the venv's bin comes first.
    FLWR_HOME: where Flower installs the ClientApp it receives; a service user may have no home.
    """
    device = deployment.device
    return {"PATH": device.path, "FLWR_HOME": str(device.flwr_home(node)), "FLWR_TELEMETRY_ENABLED": "0"}


#: what a device runs: fedlora's node (one process), or Flower's own SuperNode
NODE_PROGRAMS = ("fedlora-node", "flower-supernode")


def supernode_argv(deployment: Deployment, node: NodeKey, program: str = NODE_PROGRAMS[0]) -> list[str]:
    """The SuperNode on the device, by absolute path, with TLS and its own key."""
    device = deployment.device
    return [
        str(device.program(program)),
        "--superlink", deployment.superlink_address,
        "--root-certificates", str(device.ca_cert),
        "--auth-supernode-private-key", str(device.private_key(node)),
        "--port", str(deployment.runtime_port(node)),
        "--node-config", node_config(deployment, node),
    ]  # fmt: skip
