"""SuperNode keys: in the formats Flower's own loaders accept, owner-only, one per node."""

from __future__ import annotations

import argparse
import json
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedlora.deploy.node_keys import node_names, read_node_keys, write_node_keys
from fedlora.errors import FedloraError


def test_flower_accepts_the_public_key_for_registration(tmp_path):
    from flwr.cli.supernode.register import try_load_public_key
    from flwr.supercore.primitives.asymmetric import bytes_to_public_key

    (node,) = write_node_keys(tmp_path, ["pi-kitchen"])
    registered = try_load_public_key(node.public_key)  # what `flwr supernode register` sends
    public = bytes_to_public_key(registered)
    assert isinstance(public.curve, ec.SECP384R1)
    assert node.public_key.read_text().startswith("ecdsa-sha2-nistp384 ")
    assert node.public_key.read_text().endswith(" pi-kitchen\n")


def test_flower_supernode_loads_the_private_key_and_it_matches_the_public_one(tmp_path):
    from flwr.cli.supernode.register import try_load_public_key
    from flwr.supercore.primitives.asymmetric import public_key_to_bytes
    from flwr.supernode.cli.flower_supernode import _try_setup_client_authentication

    (node,) = write_node_keys(tmp_path, ["node0"])
    # what `flower-supernode --auth-supernode-private-key` does with the file
    args = argparse.Namespace(auth_supernode_private_key=str(node.private_key), auth_supernode_public_key=None)
    private, public = _try_setup_client_authentication(args)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert public_key_to_bytes(public) == try_load_public_key(node.public_key)
    assert node.private_key.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")


def test_keys_are_owner_only_and_every_node_has_its_own(tmp_path):
    nodes = write_node_keys(tmp_path / "keys", node_names(3, []))
    assert [n.name for n in nodes] == ["node0", "node1", "node2"]
    assert [n.partition_id for n in nodes] == [0, 1, 2]
    for node in nodes:
        assert stat.S_IMODE(node.private_key.stat().st_mode) == 0o600
        assert stat.S_IMODE(node.public_key.stat().st_mode) == 0o644
    publics = {serialization.load_ssh_public_key(n.public_key.read_bytes()).public_numbers() for n in nodes}
    assert len(publics) == 3


def test_the_manifest_names_each_node_and_its_partition(tmp_path):
    written = write_node_keys(tmp_path / "keys", ["pi-a", "pi-b"], first_partition_id=5)
    assert read_node_keys(tmp_path / "keys") == written
    manifest = json.loads((tmp_path / "keys" / "nodes.json").read_text())
    assert manifest == {"nodes": [
        {"name": "pi-a", "partition-id": 5, "private-key": "pi-a.key", "public-key": "pi-a.pub"},
        {"name": "pi-b", "partition-id": 6, "private-key": "pi-b.key", "public-key": "pi-b.pub"},
    ]}  # fmt: skip
    # the private keys go to their devices; the server keeps what it needs to print commands
    for node in written:
        node.private_key.unlink()
    assert read_node_keys(tmp_path / "keys") == written


@pytest.mark.parametrize(
    "count, names, message",
    [
        (None, [], "either --nodes N or one --name"),
        (2, ["a"], "either --nodes N or one --name"),
        (0, [], "--nodes must be at least 1"),
        (None, ["pi a"], "--name 'pi a'"),
        (None, ["../pi"], "--name '../pi'"),
        (None, ["pi", "pi"], "--name pi given more than once"),
    ],
)
def test_bad_node_names_are_refused(count, names, message):
    with pytest.raises(FedloraError, match=message):
        node_names(count, names)


def test_a_folder_without_keys_is_refused_with_the_command_that_makes_them(tmp_path):
    with pytest.raises(FedloraError, match="fedlora deploy node-keys --out"):
        read_node_keys(tmp_path)
