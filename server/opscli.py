"""`storesafe-server` operations commands: health, migrate, backup-state, restore-state,
store-gc.

For deployment: the container's HEALTHCHECK and compose call `health`, a
one-shot job calls `migrate` before the replicas start, and `backup-state` /
`restore-state` keep the server's own state (see deploy/README.md).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from common.clock import SystemClock
from common.errors import InvalidArgument, StoreSafeError, Unavailable
from server import tls
from server.db.engine import head_revision, make_engine, migrate, schema_revision, sqlite_url
from server.rpc.healthcheck import check
from server.rpc.storehealth import STORE_SERVICE
from server.statebackup import backup_state, restore_state
from server.storegc import store_gc

EXIT_UNHEALTHY = 1

DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="The server's data dir.", show_default=False),
]
DbOpt = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="STORESAFE_DB",
        help="Database URL; default: the SQLite database in the data dir.",
        show_default=False,
    ),
]


def _fail(exc: StoreSafeError) -> typer.Exit:
    typer.echo(f"error: {exc.message}", err=True)
    return typer.Exit(exc.exit_code)


def health(  # noqa: PLR0917 - typer passes options positionally
    address: Annotated[
        str, typer.Option("--address", help="The server as HOST:PORT.")
    ] = "127.0.0.1:7443",
    data_dir: DataDirOpt = None,
    ca: Annotated[
        Path | None,
        typer.Option(
            "--ca", help="CA certificate (default: ca.pem in --data-dir).", show_default=False
        ),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Plaintext (a server started with --insecure).")
    ] = False,
    service: Annotated[
        str, typer.Option("--service", help="One service, e.g. storesafe.v1.AgentService.")
    ] = "",
    server_name: Annotated[
        str | None,
        typer.Option(
            "--server-name",
            help="The name the server certificate must carry, when --address uses another.",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait.")] = 5.0,
) -> None:
    """Ask a server over grpc.health.v1 whether it serves: exit 0 SERVING, 1 anything else."""
    ca_pem: bytes | None = None
    if not insecure:
        path = ca or (data_dir / tls.CA_CERT if data_dir else None)
        if path is None:
            typer.echo("error: give --data-dir or --ca (or --insecure for plaintext)", err=True)
            raise typer.Exit(2)
        try:
            ca_pem = path.read_bytes()
        except OSError as exc:
            typer.echo(f"error: cannot read the CA certificate {path} ({exc.strerror})", err=True)
            raise typer.Exit(2) from None
    answer = check(
        address, ca_pem=ca_pem, service=service, timeout=timeout, server_name=server_name
    )
    if answer.serving and not service:  # the whole server: its off-site store too
        store = check(
            address,
            ca_pem=ca_pem,
            service=STORE_SERVICE,
            timeout=timeout,
            server_name=server_name,
        )
        if not store.serving and store.status != "NOT_FOUND":  # NOT_FOUND: an older server
            answer = dataclasses.replace(
                store, detail=store.detail or "the off-site store cannot be used now"
            )
    if answer.serving:
        typer.echo(answer.status)
        return
    typer.echo(f"error: {answer.status}: {answer.detail or 'the server is not serving'}", err=True)
    raise typer.Exit(EXIT_UNHEALTHY)


def migrate_cmd(
    data_dir: DataDirOpt = None,
    db: DbOpt = "",
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Create or upgrade the database schema to this version's newest revision, then exit.

    `serve` does the same at start; run this as a one-shot job before the replicas.
    """
    try:
        url = _url(data_dir, db)
        engine = make_engine(url)
        try:
            before = schema_revision(engine)
            migrate(engine)
            after = schema_revision(engine)
        except SQLAlchemyError as exc:
            raise Unavailable(f"cannot migrate the database: {_short(exc)}") from exc
        finally:
            engine.dispose()
    except StoreSafeError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps({"from": before, "to": after, "head": head_revision()}))
    elif before == after:
        typer.echo(f"the schema is up to date (revision {after})")
    else:
        typer.echo(f"migrated the schema from {before or 'empty'} to {after}")


def backup_state_cmd(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="The server's data dir.")],
    to: Annotated[Path, typer.Option("--to", help="The archive to write (.tar.gz, mode 0600).")],
    db: DbOpt = "",
) -> None:
    """Back up the server's own state: keys, certificates, config.key and the database.

    Safe while the server runs. The archive holds the CA key and config.key:
    keep it as safe as the server itself.
    """
    try:
        result = backup_state(data_dir, to, db_url=db, now=SystemClock().now())
    except StoreSafeError as exc:
        raise _fail(exc) from None
    typer.echo(
        f"backed up {len(result.files)} file(s) and the {result.database} database "
        f"(schema {result.schema_revision}) to {result.archive}"
    )
    if result.skipped:
        typer.echo(f"not included (folders or special files): {', '.join(result.skipped)}")


def restore_state_cmd(
    from_: Annotated[Path, typer.Option("--from", help="An archive from backup-state.")],
    data_dir: Annotated[Path, typer.Option("--data-dir", help="A new, empty data dir.")],
    db: DbOpt = "",
) -> None:
    """Restore a backup-state archive into a new data dir (and an empty PostgreSQL database)."""
    try:
        manifest = restore_state(from_, data_dir, db_url=db)
    except StoreSafeError as exc:
        raise _fail(exc) from None
    typer.echo(
        f"restored the state of {manifest['created_at']} into {data_dir}; "
        f"start it with `storesafe-server serve --data-dir {data_dir}"
        + (" --db URL`" if manifest["database"] == "postgresql" else "`")
    )


def register(app: typer.Typer) -> None:
    """Add these commands to the `storesafe-server` app."""
    app.command("health")(health)
    app.command("migrate")(migrate_cmd)
    app.command("backup-state")(backup_state_cmd)
    app.command("restore-state")(restore_state_cmd)
    app.command("store-gc")(store_gc)


def _url(data_dir: Path | None, db: str) -> str:
    if db:
        return db
    if data_dir is None:
        raise InvalidArgument("give --db URL or --data-dir DIR")
    if not data_dir.is_dir():
        raise InvalidArgument(f"the data dir {data_dir} does not exist")
    return sqlite_url(data_dir)


def _short(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
