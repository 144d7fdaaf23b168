"""`storesafe keys`: the fleet recovery key pair that off-site data is sealed to (offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli import output
from cli.context import invocation
from common.clock import iso
from common.vault.keyfile import read_key_file, write_key_file
from common.vault.keys import FleetPrivateKey

app = typer.Typer(
    name="keys", help="The fleet recovery key pair for off-site data.", no_args_is_help=True
)


def _key_json(key: FleetPrivateKey, path: Path) -> dict[str, Any]:
    return {"file": str(path), "public_key": key.public.text, "fingerprint": key.fingerprint}


@app.command("create")
def create(
    ctx: typer.Context,
    out: Annotated[
        Path, typer.Option("--out", metavar="FILE", help="Where to write the private key file.")
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Replace FILE if it exists (its key is lost).")
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", help='Print {"file", "public_key", "fingerprint", "created"}.'),
    ] = False,
) -> None:
    """Make the fleet recovery key pair: write the private key file (mode 0600), print
    the public key.

    Off-site data is sealed on the shop PCs to the public key; only the private
    key file opens it. Keep the file offline with a second copy: a lost key
    file cannot be recovered, and whoever holds it can read every site's data.
    No server is contacted.
    """
    created = invocation(ctx).now()
    key = FleetPrivateKey.generate()
    write_key_file(out, key, created, force=force)
    if as_json:
        output.print_json({**_key_json(key, out), "created": iso(created)})
        return
    output.print_line(f"Fleet recovery key written to {out} (mode 0600).")
    output.print_line(f"Public key:  {key.public.text}")
    output.print_line(f"Fingerprint: {key.fingerprint}")
    output.print_line(
        "Keep the file offline, with a second copy elsewhere: without it no off-site "
        "data can be read. Only the public key goes to the server and the agents."
    )


@app.command("show")
def show(
    key_file: Annotated[
        Path, typer.Option("--key", metavar="FILE", help="The private key file to read.")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"file", "public_key", "fingerprint"}.')
    ] = False,
) -> None:
    """Check a key file and print its public key and fingerprint (no server is contacted)."""
    key = read_key_file(key_file)
    if as_json:
        output.print_json(_key_json(key, key_file))
        return
    output.print_line(f"Public key:  {key.public.text}")
    output.print_line(f"Fingerprint: {key.fingerprint}")
