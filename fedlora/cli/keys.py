"""``fedlora keys generate``: the Ed25519 key pair that signs device bundles and verifies them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Keys that sign device bundles (fedlora export --sign-key) and verify them (fedlora run --public-key).", no_args_is_help=True)

PRIVATE, PUBLIC = "export.key", "export.pub"


@app.command("generate")
def generate(
    out: Annotated[Path, typer.Option("--out", help=f"Folder to write {PRIVATE} (mode 0600) and {PUBLIC} into (created, mode 0700).")],
    force: Annotated[bool, typer.Option("--force", help="Replace keys already there: bundles signed with the old key then fail to verify.")] = False,
) -> None:
    """Make a signing key pair: the private key stays where bundles are exported, the public key goes to every device."""
    from fedlora.deploy.output import prepare_output_dir, write_file
    from fedlora.device_runtime.signing import generate_key_pair

    folder = prepare_output_dir(out, force)
    private_pem, public_pem = generate_key_pair()
    write_file(folder / PRIVATE, private_pem, 0o600)
    write_file(folder / PUBLIC, public_pem, 0o644)
    typer.echo(f"wrote {folder / PRIVATE} (keep it private) and {folder / PUBLIC} (copy it to each device)")
    typer.echo(f"next: fedlora export ... --sign-key {folder / PRIVATE}, then fedlora run BUNDLE --public-key {folder / PUBLIC} "
               "(or set FEDLORA_PUBLIC_KEY on the device)")
