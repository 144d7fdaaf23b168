"""`storesafe-server`: initialise a data dir, serve gRPC (and HTTP), manage admin tokens."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from common.clock import SystemClock
from common.errors import FailedPrecondition, StoreSafeError
from server import tls
from server.app import ServeOptions, serve
from server.db.engine import make_engine, migrate, sqlite_url
from server.services import credentials, readers
from server.services.push import RECONNECTS_PER_SECOND
from server.services.secretbox import SecretBox
from server.state.sql import SqlFleetState

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="The StoreSafe server: fleet state, agent check-ins, admin API.",
)

DataDir = Annotated[
    Path, typer.Option("--data-dir", help="Folder for the database, keys and certificates.")
]
DbUrl = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="STORESAFE_DB",
        help="Database URL; default: SQLite in the data dir. "
        "e.g. postgresql+psycopg://user@host/db",
    ),
]


def _fail(exc: StoreSafeError) -> typer.Exit:
    typer.echo(f"error: {exc.message}", err=True)
    return typer.Exit(exc.exit_code)


def _admin_token(db_url: str, name: str, *, read_only: bool = False) -> str:
    engine = make_engine(db_url)
    migrate(engine)
    state = SqlFleetState(engine)
    try:
        minted = readers.mint() if read_only else credentials.mint(credentials.ADMIN)
        state.create_admin_token_sync(
            token_id=minted.id,
            name=name,
            secret_hash=minted.secret_hash,
            now=SystemClock().now(),
        )
        return minted.text
    finally:
        state.close()


@app.command()
def init(
    data_dir: DataDir,
    hostname: Annotated[
        list[str] | None,
        typer.Option("--hostname", help="Name or IP agents use to reach this server (repeatable)."),
    ] = None,
    db: DbUrl = "",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the token and CA path as JSON.")
    ] = False,
) -> None:
    """Create the data dir, database, private CA, server certificate and first admin token."""
    try:
        if (data_dir / tls.CA_CERT).exists():
            raise FailedPrecondition(f"{data_dir} is already initialised; keep using it")
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            data_dir.chmod(0o700)
        except OSError as exc:
            raise FailedPrecondition(f"cannot create {data_dir}: {exc.strerror}") from exc
        names = list(hostname or []) + tls.default_hostnames()
        ca = tls.create_pki(data_dir, names, SystemClock().now())
        SecretBox.for_data_dir(data_dir, create=True)
        token = _admin_token(db or sqlite_url(data_dir), "admin")
    except StoreSafeError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps({"admin_token": token, "ca_cert": str(ca.resolve())}))
        return
    typer.echo(f"Initialised {data_dir}")
    typer.echo(f"CA certificate (give it to agents and the CLI): {ca.resolve()}")
    typer.echo(f"Admin token (shown once, stored only as a hash):\n  {token}")


@app.command("serve")
def serve_cmd(  # noqa: PLR0917 - typer passes options positionally
    data_dir: DataDir,
    listen: Annotated[str, typer.Option(help="HOST:PORT to listen on.")] = "0.0.0.0:7443",
    db: DbUrl = "",
    insecure: Annotated[
        bool,
        typer.Option("--insecure", help="Plaintext, no TLS; allowed only on a loopback address."),
    ] = False,
    checkin_interval: Annotated[
        int, typer.Option(help="Seconds between agent check-ins.", min=1, max=3600)
    ] = 60,
    offline_after_minutes: Annotated[
        float, typer.Option(help="Default for status.offline_after_minutes.", min=0.01)
    ] = 15.0,
    stale_after_hours: Annotated[
        float, typer.Option(help="Default for status.stale_after_hours.", min=0.01)
    ] = 26.0,
    poll_seconds: Annotated[
        float,
        typer.Option(
            help="How often to look for changes made by other replicas "
            "(the safety net under PostgreSQL LISTEN/NOTIFY).",
            min=0.5,
            max=3600,
        ),
    ] = 10.0,
    reconnect_rate: Annotated[
        float,
        typer.Option(
            help="Agents per second this server takes back after a restart: on stop, each "
            "connected agent is told to return at a random moment within "
            "(connected agents / this) seconds.",
            min=1,
        ),
    ] = RECONNECTS_PER_SECOND,
    writer_process: Annotated[
        bool,
        typer.Option(
            "--writer-process/--writer-thread",
            help="Where check-ins and reports are decoded and written to the database: a "
            "child process (it keeps that work off the gRPC loop; measured in "
            "bench/README.md) or a thread of this process.",
        ),
    ] = True,
    http_listen: Annotated[
        str,
        typer.Option(
            "--http-listen",
            help="HOST:PORT for HTTP: /metrics (Prometheus), /healthz and the fleet status "
            "page (admin token). TLS with the server certificate; plaintext only with "
            "--insecure on loopback. Off when not given.",
        ),
    ] = "",
) -> None:
    """Serve the agent and admin gRPC APIs (and HTTP with --http-listen) until SIGTERM."""
    _logging()
    options = ServeOptions(
        data_dir=data_dir,
        listen=listen,
        db_url=db,
        insecure=insecure,
        checkin_interval=checkin_interval,
        offline_after_minutes=offline_after_minutes,
        stale_after_hours=stale_after_hours,
        poll_seconds=poll_seconds,
        reconnects_per_second=reconnect_rate,
        writer_process=writer_process,
        http_listen=http_listen,
    )
    try:
        asyncio.run(serve(options))
    except StoreSafeError as exc:
        raise _fail(exc) from None


token_app = typer.Typer(no_args_is_help=True, help="Admin tokens for the `storesafe` CLI.")
app.add_typer(token_app, name="admin-token")


@token_app.command("create")
def admin_token_create(
    data_dir: DataDir,
    name: Annotated[str, typer.Option(help="Who the token is for (shown in the audit log).")],
    db: DbUrl = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
    read_only: Annotated[
        bool,
        typer.Option(
            "--read-only",
            help="A token that opens the fleet status page (--http-listen) and nothing else.",
        ),
    ] = False,
) -> None:
    """Create another admin token (printed once); --read-only for the status page only."""
    try:
        token = _admin_token(db or sqlite_url(data_dir), name[:64], read_only=read_only)
    except StoreSafeError as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps({"admin_token": token}) if as_json else token)


def _logging() -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
