"""`storesafe keys`: the fleet recovery key pair that off-site data is sealed to.

`keys create` writes the private key file first and only then registers the
public key with the server (the fleet value `upload.recovery_key`), so no
agent ever seals to a key whose file was not written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli import output
from cli.context import admin, invocation
from common.clock import iso
from common.errors import StoreSafeError

if TYPE_CHECKING:
    from common.vault.keys import FleetPrivateKey

app = typer.Typer(
    name="keys", help="The fleet recovery key pair for off-site data.", no_args_is_help=True
)


RECOVERY_KEY = "upload.recovery_key"


def _register(ctx: typer.Context, key: FleetPrivateKey, out: Path) -> int:
    """Set the public key as the fleet's `upload.recovery_key`; the new revision."""
    try:
        change = admin(ctx).set_config("fleet", "", {RECOVERY_KEY: key.public.text}, [])
    except StoreSafeError as err:
        raise type(err)(
            f"the key file {out} is written, but its public key is not registered: "
            f"{err.message}; register it later with "
            f"`storesafe config set --fleet {RECOVERY_KEY}={key.public.text}`"
        ) from None
    return change.revision


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
    no_register: Annotated[
        bool,
        typer.Option(
            "--no-register",
            help=f"Do not contact the server (set {RECOVERY_KEY} later with `config set`).",
        ),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='Print {"file", "public_key", "fingerprint", "created", "registered", '
            '"revision"}.',
        ),
    ] = False,
) -> None:
    """Make the fleet recovery key pair: write the private key file (mode 0600), then
    register the public key with the server as the fleet value upload.recovery_key.

    Off-site data is sealed on the shop PCs to the public key; only the private
    key file opens it. Keep the file offline with a second copy: a lost key
    file cannot be recovered, and whoever holds it can read every site's data.
    Data sealed to an earlier key stays readable only with that key's file.
    With --no-register no server is contacted.
    """
    from common.vault.keyfile import write_key_file
    from common.vault.keys import FleetPrivateKey

    created = invocation(ctx).now()
    key = FleetPrivateKey.generate()
    write_key_file(out, key, created, force=force)
    revision = None if no_register else _register(ctx, key, out)
    if as_json:
        output.print_json(
            {
                **_key_json(key, out),
                "created": iso(created),
                "registered": revision is not None,
                "revision": revision,
            }
        )
        return
    output.print_line(f"Fleet recovery key written to {out} (mode 0600).")
    output.print_line(f"Public key:  {key.public.text}")
    output.print_line(f"Fingerprint: {key.fingerprint}")
    if revision is None:
        output.print_line(
            f"Not registered: set it with `storesafe config set --fleet {RECOVERY_KEY}=...` "
            "(the public key above) for the agents to seal to it."
        )
    else:
        output.print_line(
            f"Registered as the fleet's {RECOVERY_KEY} (revision {revision}): agents seal "
            "new data keys to it."
        )
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
    from common.vault.keyfile import read_key_file

    key = read_key_file(key_file)
    if as_json:
        output.print_json(_key_json(key, key_file))
        return
    output.print_line(f"Public key:  {key.public.text}")
    output.print_line(f"Fingerprint: {key.fingerprint}")
