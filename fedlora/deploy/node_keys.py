"""SuperNode authentication key pairs, in the formats Flower 1.42 reads.

For each node ``NAME``:

- ``NAME.key``: the private key, EC P-384, OpenSSH format, unencrypted, mode 0600. It stays
  on the device: ``flower-supernode --auth-supernode-private-key NAME.key``.
- ``NAME.pub``: the public key, one OpenSSH line (``ecdsa-sha2-nistp384 AAAA… NAME``). It
  stays on the server: ``flwr supernode register NAME.pub`` lets that node in when the
  SuperLink runs with ``--enable-supernode-auth``.

``nodes.json`` records which partition of the data each node trains on, so that the
commands printed later give every device its own ``partition-id``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedlora.deploy.output import PRIVATE, PUBLIC, prepare_output_dir, write_file
from fedlora.errors import FedloraError

MANIFEST = "nodes.json"
CURVE = ec.SECP384R1  # flwr supernode register: "a P-384 (or any other NIST EC curve) public key"
# A name becomes a file name, a systemd unit name and part of a command line: keep it plain.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class NodeKey:
    """One SuperNode: its name, its data partition, and its key files (absolute paths)."""

    name: str
    partition_id: int
    private_key: Path
    public_key: Path


def node_names(count: int | None, names: list[str]) -> list[str]:
    """``node0 … node{count-1}``, or the given names; exactly one of the two."""
    if (count is None) == (not names):
        raise FedloraError("give either --nodes N or one --name per node, not both and not neither")
    if count is not None:
        if count < 1:
            raise FedloraError(f"--nodes must be at least 1, got {count}")
        return [f"node{i}" for i in range(count)]
    for name in names:
        if not _NAME.match(name):
            raise FedloraError(f"--name {name!r}: use 1..63 letters, digits, '-' or '_', starting with a letter or digit")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise FedloraError(f"--name {', '.join(repeated)} given more than once; every node needs its own key")
    return names


def key_pair(comment: str) -> tuple[bytes, bytes]:
    """A new (private, public) key pair as OpenSSH bytes; the public line ends with ``comment``."""
    key = ec.generate_private_key(CURVE())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public + b" " + comment.encode() + b"\n"


def write_node_keys(out: Path, names: list[str], first_partition_id: int = 0, force: bool = False) -> list[NodeKey]:
    """A key pair per name in ``out``, and ``nodes.json``; node i trains partition first + i."""
    if first_partition_id < 0:
        raise FedloraError(f"--first-partition-id must be 0 or more, got {first_partition_id}")
    folder = prepare_output_dir(out, force)
    nodes = []
    for offset, name in enumerate(names):
        private, public = key_pair(name)
        node = NodeKey(name, first_partition_id + offset, folder / f"{name}.key", folder / f"{name}.pub")
        write_file(node.private_key, private, PRIVATE)
        write_file(node.public_key, public, PUBLIC)
        nodes.append(node)
    records = [{"name": n.name, "partition-id": n.partition_id, "private-key": n.private_key.name, "public-key": n.public_key.name} for n in nodes]
    write_file(folder / MANIFEST, (json.dumps({"nodes": records}, indent=2) + "\n").encode(), PUBLIC)
    return nodes


def read_node_keys(folder: Path) -> list[NodeKey]:
    """The nodes of an earlier ``fedlora deploy node-keys``, checked against the files there."""
    folder = Path(folder).expanduser().absolute()
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise FedloraError(f"{folder} has no {MANIFEST}; create the keys with `fedlora deploy node-keys --out {folder}`")
    try:
        records = json.loads(manifest.read_text())["nodes"]
        nodes = [NodeKey(r["name"], int(r["partition-id"]), folder / r["private-key"], folder / r["public-key"]) for r in records]
    except (ValueError, KeyError, TypeError) as exc:
        raise FedloraError(f"{manifest} is not a nodes manifest written by `fedlora deploy node-keys` ({exc})") from exc
    for node in nodes:
        if not node.public_key.is_file():
            raise FedloraError(f"{node.public_key} is missing; `fedlora deploy node-keys` wrote it next to {MANIFEST}")
    return nodes
