"""`storesafe images`: the shops' image folders in the off-site store, listed and restored."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli import values
from cli.context import admin

app = typer.Typer(
    name="images",
    help="Image folders in the off-site store: snapshots and restores.",
    no_args_is_help=True,
)


@app.command("snapshots")
def snapshots(
    ctx: typer.Context,
    site: Annotated[str, typer.Argument(help="Name of the site.")],
    limit: Annotated[int, typer.Option(metavar="N", help="At most N snapshots (1-1000).")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the image snapshots of SITE in the off-site store, newest first.

    The server sees only sealed data: the figures are those the agent declared
    (files, bytes) and what the store holds (chunks, stored bytes).
    """
    from cli import output_images
    from cli.restore import KIND

    site = values.name(site, "site")
    rows = admin(ctx).list_snapshots(site, kind=KIND, limit=values.limit(limit))
    output_images.print_snapshots(rows, site, as_json=as_json)


@app.command("restore")
def restore_images(
    ctx: typer.Context,
    *,
    site: Annotated[str, typer.Argument(help="Name of the site.")],
    to: Annotated[
        Path, typer.Option("--to", metavar="DIR", help="Folder to restore into (made if missing).")
    ],
    key: Annotated[
        Path, typer.Option("--key", metavar="FILE", help="The fleet recovery key file.")
    ],
    snapshot: Annotated[
        str | None,
        typer.Option(
            "--snapshot", metavar="ID", help="Snapshot id, or its start as listed; default: newest."
        ),
    ] = None,
    path: Annotated[
        str | None,
        typer.Option("--path", metavar="PREFIX", help="Only the file or folder PREFIX ('a/b')."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace files in DIR that differ from the snapshot.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the outcome as JSON (no progress bar).")
    ] = False,
) -> None:
    """Restore SITE's image snapshot into DIR, checking every chunk against its sealed id.

    A file already in DIR with the snapshot's size and mtime is read and checked
    (its chunk ids recomputed) and skipped when equal, so an interrupted restore
    can be run again. A file that differs is left alone and named, unless
    --force. Nothing is written outside DIR or through a symbolic link in it.
    Exit 0 only when every file is in DIR and checked; a wrong key file, or a
    missing or altered chunk (named, with the files it breaks) exit 5.
    """
    from cli import output_images
    from cli.progress import progress
    from cli.restore import RestoreIncomplete, restore
    from common.vault.keyfile import read_key_file

    site = values.name(site, "site")
    fleet_key = read_key_file(key)
    with progress(not as_json) as start:
        outcome = restore(
            admin(ctx),
            site,
            fleet_key,
            folder=to,
            snapshot_id=snapshot or "",
            prefix=path,
            force=force,
            start=start,
        )
    output_images.print_outcome(outcome, str(to), as_json=as_json)
    if outcome.failures:
        raise RestoreIncomplete(
            f"{len(outcome.failures)} problem(s): not every file of the snapshot is in {to}"
        )
