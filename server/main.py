"""`storesafe-server`: initialise a data dir, serve gRPC, manage admin tokens (and opscli's)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from common.clock import SystemClock, iso
from common.errors import FailedPrecondition, StoreSafeError
from common.version import VERSION
from server import memory, opscli, tls
from server.app import ServeOptions, serve
from server.db.engine import make_engine, migrate, sqlite_url
from server.domain.records import AdminTokenRecord
from server.services.admin_tokens import AdminTokens, local_actor
from server.services.push import RECONNECTS_PER_SECOND
from server.services.secretbox import SecretBox
from server.state.sql import SqlFleetState
from server.state.writer import BatchWriter
from server.storage.factory import DEFAULT_DIR as DEFAULT_STORE_DIR

T = TypeVar("T")

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="The StoreSafe server: fleet state, agent check-ins, admin API.",
    # Plain help: rich's option table cut long option names short at 80 columns.
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"storesafe-server {VERSION}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """The StoreSafe server: fleet state, agent check-ins, admin API."""


DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir", metavar="DIR", help="Folder for the database, keys and certificates."
    ),
]
DbUrl = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="STORESAFE_DB",
        metavar="URL",
        help="Database URL; default: SQLite in the data dir. "
        "e.g. postgresql+psycopg://user@host/db",
    ),
]


def _fail(exc: StoreSafeError) -> typer.Exit:
    typer.echo(f"error: {exc.message}", err=True)
    return typer.Exit(exc.exit_code)


def _with_tokens(db_url: str, use: Callable[[AdminTokens], Awaitable[T]]) -> T:
    """Run `use` on the admin tokens of the database at `db_url` (offline: no server)."""
    engine = make_engine(db_url)
    migrate(engine)
    state = SqlFleetState(engine, BatchWriter(engine))

    async def run() -> T:
        return await use(AdminTokens(state, SystemClock()))

    try:
        return asyncio.run(run())
    finally:
        state.close()


def _admin_token(db_url: str, name: str) -> str:
    return _with_tokens(db_url, lambda tokens: tokens.create(actor=local_actor(), name=name))


@app.command(short_help="Create a data dir: database, private CA, first admin token.")
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
        url = db or sqlite_url(data_dir)
        migrate(make_engine(url))  # first: an unusable --db leaves no half-made data dir
        names = list(hostname or []) + tls.default_hostnames()
        ca = tls.create_pki(data_dir, names, SystemClock().now())
        SecretBox.for_data_dir(data_dir, create=True)
        (data_dir / DEFAULT_STORE_DIR).mkdir(mode=0o700, exist_ok=True)
        token = _admin_token(url, "admin")
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
    listen: Annotated[
        str, typer.Option(metavar="HOST:PORT", help="Address to listen on.")
    ] = "0.0.0.0:7443",
    db: DbUrl = "",
    insecure: Annotated[
        bool,
        typer.Option("--insecure", help="Plaintext, no TLS; allowed only on a loopback address."),
    ] = False,
    checkin_interval: Annotated[
        int,
        typer.Option(metavar="SECONDS", help="Seconds between agent check-ins.", min=1, max=3600),
    ] = 60,
    offline_after_minutes: Annotated[
        float,
        typer.Option(metavar="MINUTES", help="Default for status.offline_after_minutes.", min=0.01),
    ] = 15.0,
    stale_after_hours: Annotated[
        float,
        typer.Option(metavar="HOURS", help="Default for status.stale_after_hours.", min=0.01),
    ] = 26.0,
    poll_seconds: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help="How often to look for changes made by other replicas "
            "(the safety net under PostgreSQL LISTEN/NOTIFY).",
            min=0.5,
            max=3600,
        ),
    ] = 10.0,
    reconnect_rate: Annotated[
        float,
        typer.Option(
            metavar="RATE",
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
    alert_interval: Annotated[
        float,
        typer.Option(
            help="Seconds between alert evaluations (status transitions, reminders).",
            min=0.1,
            max=3600,
        ),
    ] = 15.0,
    http_listen: Annotated[
        str,
        typer.Option(
            "--http-listen",
            help="HOST:PORT for HTTP: /metrics (Prometheus), /healthz and the fleet status "
            "page (admin token). TLS with the server certificate; plaintext only with "
            "--insecure on loopback. Off when not given.",
        ),
    ] = "",
    store: Annotated[
        str,
        typer.Option(
            "--store",
            envvar="STORESAFE_STORE",
            metavar="URL",
            help="The off-site blob store: a path, file:PATH, or s3://BUCKET/PREFIX with "
            "?endpoint=URL&region=NAME (S3 credentials from the environment: "
            "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY). Default: <data-dir>/store.",
        ),
    ] = "",
    maintenance_every: Annotated[
        float,
        typer.Option(
            "--maintenance-every",
            metavar="HOURS",
            min=0,
            help="Hours between runs of the off-site store's maintenance (retention, then "
            "garbage collection; the first run 5 minutes after start); 0: off.",
        ),
    ] = 24.0,
    gc_margin_hours: Annotated[
        float,
        typer.Option(
            "--gc-margin-hours",
            metavar="HOURS",
            min=1,
            help="Garbage collection's safety margin: chunks stored or condemned less than "
            "this long ago are never deleted.",
        ),
    ] = 24.0,
) -> None:
    """Serve the agent and admin gRPC APIs (and HTTP with --http-listen) until SIGTERM."""
    _logging()
    memory.keep_large_buffers()
    memory.freeze_startup_objects()
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
        alert_interval=alert_interval,
        http_listen=http_listen,
        store_url=store,
        maintenance_every=maintenance_every,
        gc_margin_hours=gc_margin_hours,
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
    name: Annotated[
        str,
        typer.Option(help="Who the token is for (unique among active tokens; in the audit log)."),
    ],
    db: DbUrl = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create another admin token (printed once, stored only as a hash; audited)."""
    try:
        token = _admin_token(db or sqlite_url(data_dir), name)
    except StoreSafeError as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps({"admin_token": token}) if as_json else token)


@token_app.command("list")
def admin_token_list(
    data_dir: DataDir,
    db: DbUrl = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List every admin token, active and revoked (names and ids only, never a secret)."""
    try:
        found = _with_tokens(db or sqlite_url(data_dir), lambda tokens: tokens.list())
    except StoreSafeError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps([admin_token_json(t) for t in found], indent=2))
        return
    for line in admin_token_lines(found):
        typer.echo(line)


@token_app.command("revoke")
def admin_token_revoke(
    name: Annotated[str, typer.Argument(help="Name of the active token to revoke.")],
    data_dir: DataDir,
    db: DbUrl = "",
) -> None:
    """Revoke the active admin token NAME at once (refused for the last active one; audited)."""
    try:
        revoked = _with_tokens(
            db or sqlite_url(data_dir),
            lambda tokens: tokens.revoke(actor=local_actor(), name=name),
        )
    except StoreSafeError as exc:
        raise _fail(exc) from None
    typer.echo(f"Revoked admin token {revoked.name} ({revoked.id}); it is refused from now on.")


def admin_token_json(token: AdminTokenRecord) -> dict[str, object]:
    """One `admin-token list --json` row."""
    return {
        "name": token.name,
        "id": token.id,
        "active": token.active,
        "created_at": iso(token.created_at),
        "created_by": token.created_by or None,
        "revoked_at": iso(token.revoked_at),
        "revoked_by": token.revoked_by or None,
    }


def admin_token_lines(tokens: list[AdminTokenRecord]) -> list[str]:
    """The `admin-token list` table as text lines."""
    if not tokens:
        return ["No admin tokens."]
    rows = [("NAME", "ID", "STATE", "CREATED", "BY", "REVOKED")]
    for t in tokens:
        rows.append(
            (
                t.name,
                t.id,
                "active" if t.active else "revoked",
                f"{t.created_at:%Y-%m-%d %H:%M}",
                t.created_by or "-",
                f"{t.revoked_at:%Y-%m-%d %H:%M} by {t.revoked_by or '-'}" if t.revoked_at else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _logging() -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


opscli.register(app)  # health, migrate, backup-state, restore-state
