"""``fedlora deploy node-keys``: one SuperNode authentication key pair per device."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def node_keys(
    out: Annotated[Path, typer.Option("--out", help="Folder to write NAME.key, NAME.pub and nodes.json into (created, mode 0700).")],
    nodes: Annotated[Optional[int], typer.Option("--nodes", help="Make keys for this many nodes, named node0, node1, ...")] = None,
    name: Annotated[Optional[list[str]], typer.Option("--name", help="Make a key for a node of this name; repeat for each node.")] = None,
    first_partition_id: Annotated[
        int, typer.Option("--first-partition-id", help="The first node trains this data partition, the next one the following, and so on.")
    ] = 0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite these files in a folder that is not empty.")] = False,
) -> None:
    """Create SuperNode key pairs: EC P-384, OpenSSH format, as Flower's node authentication wants."""
    from fedlora.deploy.node_keys import MANIFEST, node_names, write_node_keys

    names = node_names(nodes, name or [])
    written = write_node_keys(out, names, first_partition_id=first_partition_id, force=force)
    folder = written[0].public_key.parent
    typer.echo(f"wrote {folder}:")
    for node in written:
        typer.echo(f"  {node.private_key.name} (0600, for its device only)  {node.public_key.name} (for flwr supernode register)"
                   f"  partition-id {node.partition_id}")  # fmt: skip
    typer.echo(f"  {MANIFEST}: the nodes and their partitions")
