"""`storesafe restore` and `drill`: a site's database backup from the off-site store, proven.

`restore` writes one backup (the newest, or that of a backup run) to a plain
file, checked chunk by chunk and whole, and with --database restores it into a
new Firebird database and checks that too (a drill, recorded on the server).
`drill` does the same for one or every site into a scratch folder and removes
what it made afterwards: the technician's monthly proof that the off-site
copies restore.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli import values
from cli.context import admin, invocation
from common.errors import FailedPrecondition, InvalidArgument, StoreSafeError

if TYPE_CHECKING:
    from cli.drill import Restore
    from cli.restore_db import Server

app = typer.Typer()

_RUN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")

KeyOption = Annotated[
    Path, typer.Option("--key", metavar="FILE", help="The fleet recovery key file.")
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the outcome as JSON (no progress bar).")
]
FbHost = Annotated[
    str,
    typer.Option(
        "--fb-host",
        envvar="STORESAFE_FB_HOST",
        metavar="HOST",
        help="Firebird server to restore into (HOST or HOST/PORT); it reads the backup "
        "files and writes the database itself.",
    ),
]
FbUser = Annotated[
    str,
    typer.Option(
        "--fb-user", envvar=["STORESAFE_FB_USER", "ISC_USER"], metavar="USER", help="Firebird user."
    ),
]
FbPassword = Annotated[
    str,
    typer.Option(
        "--fb-password",
        envvar=["STORESAFE_FB_PASSWORD", "ISC_PASSWORD"],
        metavar="PASSWORD",
        show_default=False,
        help="Firebird password (prefer the environment variable: it stays out of ps).",
    ),
]


def _server(host: str, user: str, password: str) -> Server:
    from cli.restore_db import Server

    if not host.strip() or not user.strip():
        raise InvalidArgument("--fb-host and --fb-user must not be empty")
    if not password:
        raise InvalidArgument(
            "a restore into a database needs the Firebird password: set STORESAFE_FB_PASSWORD "
            "(or ISC_PASSWORD)"
        )
    return Server(host.strip(), user.strip(), password)


def _run_id(text: str) -> str:
    if not _RUN.fullmatch(text):
        raise InvalidArgument(f"--run {text[:80]!r} is not a backup run id (as `runs` lists it)")
    return text


@app.command("restore")
def restore_backup(
    ctx: typer.Context,
    *,
    site: Annotated[str, typer.Argument(help="Name of the site.")],
    to: Annotated[
        Path,
        typer.Option(
            "--to",
            metavar="PATH",
            help="The .fbk file to write (gbak); for an nbackup chain, a folder for its levels.",
        ),
    ],
    key: KeyOption,
    run: Annotated[
        str | None,
        typer.Option("--run", metavar="ID", help="The backup run to restore; default: newest."),
    ] = None,
    database: Annotated[
        Path | None,
        typer.Option(
            "--database",
            metavar="PATH",
            help="Also restore into this new database (a path on the Firebird server), "
            "validate it and count its rows; recorded as a drill.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a PATH or database that exists.")
    ] = False,
    as_json: JsonOption = False,
    fb_host: FbHost = "localhost",
    fb_user: FbUser = "SYSDBA",
    fb_password: FbPassword = "",
) -> None:
    """Restore SITE's database backup from the off-site store, checking every byte.

    Every chunk is checked against its sealed id, and the reassembled backup
    against its size and the sha256 recorded at backup time. PATH is a plain
    gbak file: `gbak -c PATH NEW.fdb` restores it as well. A restore cut short
    (connection lost) resumes when run again with the same PATH. With
    --database the backup is restored into a new database through the Firebird
    services API, validated and its rows counted, and the drill is recorded on
    the server, also when it failed. Exit 0 only if every check passed.
    """
    from cli import output_restore
    from cli.drill import restore_site
    from cli.progress import progress
    from common.vault.keyfile import read_key_file

    site = values.name(site, "site")
    run_id = _run_id(run) if run is not None else ""
    server = _server(fb_host, fb_user, fb_password) if database is not None else None
    fleet_key = read_key_file(key)
    to = to.absolute()
    if database is not None:
        from cli.restore_db import refuse_existing  # Firebird's client: only with --database

        database = database.absolute()
        refuse_existing(database, force=force)
    with progress(not as_json) as start:
        result = restore_site(
            admin(ctx),
            invocation(ctx).clock,
            site=site,
            key=fleet_key,
            to=to,
            run_id=run_id,
            database=database,
            server=server,
            force=force,
            start=start,
        )
    output_restore.print_restore(result, as_json=as_json)
    _raise(result)


def _raise(result: Restore) -> None:
    if result.error is not None:
        raise result.error
    if result.record_error is not None:
        raise FailedPrecondition(
            f"every check passed, but the server did not record the drill: "
            f"{result.record_error.message}"
        )


def _sites(ctx: typer.Context, site: str | None) -> list[str]:
    """SITE, or every site with a database snapshot in the store."""
    from cli.backup_fetch import KIND

    if site is not None:
        return [values.name(site, "site")]
    client = admin(ctx)
    return [
        s.site for s in client.list_sites() if client.list_snapshots(s.site, kind=KIND, limit=1)
    ]


@app.command("drill")
def drill(
    ctx: typer.Context,
    *,
    site: Annotated[str | None, typer.Argument(help="Name of the site (or --all).")] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every site with a database copy off site.")
    ] = False,
    key: KeyOption,
    scratch: Annotated[
        Path,
        typer.Option(
            "--scratch",
            metavar="DIR",
            help="Folder for the scratch files; the Firebird server's user must be able to "
            "read and write in it.",
        ),
    ],
    as_json: JsonOption = False,
    fb_host: FbHost = "localhost",
    fb_user: FbUser = "SYSDBA",
    fb_password: FbPassword = "",
) -> None:
    """Prove that the off-site copies restore, site by site, in scratch databases.

    For each site (--all: every site with a database copy off site) the newest
    backup is restored into a scratch database in DIR, validated and its rows
    counted; the drill is recorded on the server and the scratch files removed.
    Prints a table of results. Exit 0 when every drill passed, 2 when any failed
    (like `check`); a site whose drill failed is named with the reason.
    """
    from cli import output_restore
    from cli.drill import restore_site
    from cli.progress import progress
    from common.vault.keyfile import read_key_file

    if (site is None) == (not every):
        raise InvalidArgument("give one SITE or --all (not both)")
    server = _server(fb_host, fb_user, fb_password)
    fleet_key = read_key_file(key)
    scratch = scratch.absolute()
    if not scratch.is_dir():
        raise FailedPrecondition(f"--scratch {scratch} is not a folder")
    results = []
    for name in _sites(ctx, site):
        stem = scratch / f"{name}-drill-{uuid.uuid4().hex[:8]}"
        to, database = stem.with_suffix(".fbk"), stem.with_suffix(".fdb")
        with progress(not as_json, f"{name}") as start:
            result = restore_site(
                admin(ctx),
                invocation(ctx).clock,
                site=name,
                key=fleet_key,
                to=to,
                database=database,
                server=server,
                start=start,
                trigger="drill",
            )
        _clean(result, server, to, database)
        results.append(result)
    output_restore.print_drills(results, as_json=as_json)
    if not all(r.ok for r in results):
        raise typer.Exit(2)


def _clean(result: Restore, server: Server, to: Path, database: Path) -> None:
    """Remove a drill's scratch files: the backup copy, its partials, the database."""
    from cli.backup_fetch import remove
    from cli.restore_db import drop

    if result.plan is not None:
        remove(result.plan, to)
    try:
        drop(server, database)
    except StoreSafeError as err:
        if result.error is None:
            result.error = err
