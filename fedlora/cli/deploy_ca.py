"""``fedlora deploy ca``: a CA and the SuperLink's TLS certificate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def ca(
    out: Annotated[Path, typer.Option("--out", help="Folder to write ca.crt, ca.key, server.pem and server.key into (created, mode 0700).")],
    address: Annotated[
        Optional[list[str]],
        typer.Option(
            "--address",
            "--server-name",
            help="An IP address or host name the SuperNodes and the flwr CLI use to reach the SuperLink; repeat for several. "
            "127.0.0.1 and localhost are always included.",
        ),
    ] = None,
    days: Annotated[int, typer.Option("--days", help="Days the server certificate is valid (the CA: at least 10 years).")] = 825,
    force: Annotated[bool, typer.Option("--force", help="Overwrite these files in a folder that is not empty.")] = False,
) -> None:
    """Create a CA and a SuperLink server certificate for the given addresses."""
    from fedlora.deploy.certificates import certificate_hosts, write_tls_files

    files = write_tls_files(out, address or [], days=days, force=force)
    hosts = ", ".join(str(host) for host in certificate_hosts(files.server_cert))
    typer.echo(f"wrote {files.folder}:")
    typer.echo(f"  {files.ca_cert.name:<11} CA certificate: the SuperLink (--ssl-ca-certfile), every device (--root-certificates), the flwr CLI")
    typer.echo(f"  {files.ca_key.name:<11} CA private key (0600): only to issue new server certificates; keep it offline")
    typer.echo(f"  {files.server_cert.name:<11} server certificate for {hosts} (--ssl-certfile)")
    typer.echo(f"  {files.server_key.name:<11} server private key (0600, --ssl-keyfile)")
    typer.echo("next: fedlora deploy node-keys --out KEYS --nodes N, then fedlora deploy commands --tls "
               f"{files.folder} --keys KEYS")  # fmt: skip
