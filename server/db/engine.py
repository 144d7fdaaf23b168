"""Engines for SQLite (embedded default) and PostgreSQL, and schema migration."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from common.errors import InvalidArgument

log = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).parent / "migrations"


def sqlite_url(data_dir: Path) -> str:
    """The URL of the embedded database inside a data dir."""
    return f"sqlite:///{(data_dir / 'storesafe.db').resolve()}"


def make_engine(url: str) -> Engine:
    """Create an engine with the settings StoreSafe relies on for `url`."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise InvalidArgument(f"the database URL {url!r} is not valid: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = create_engine(parsed, pool_size=10, max_overflow=10, pool_pre_ping=True)
        event.listen(engine, "connect", _postgres_settings)
        return engine
    raise InvalidArgument(
        f"the database URL must be sqlite:/// or postgresql+psycopg://, not {backend!r}"
    )


def _postgres_settings(dbapi_connection: Any, _record: Any) -> None:
    """Plan every statement for the tables as they are now. psycopg prepares a statement
    after a few runs, and PostgreSQL may then keep a generic plan made while a table was
    nearly empty: a fresh server's run-id lookup kept scanning the whole, fast-growing
    runs table (measured: three times the database CPU per report) until autovacuum
    analyzed it. Planning these short statements each time costs microseconds."""
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_custom_plan")
    dbapi_connection.commit()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to the newest Alembic revision.

    On PostgreSQL an advisory lock keeps replicas that start together from
    migrating at the same time.
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def schema_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None: never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        revision: str | None = MigrationContext.configure(conn).get_current_revision()
        return revision


def head_revision() -> str:
    """The newest Alembic revision this version of StoreSafe knows."""
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head
