"""Change notices between server replicas: PostgreSQL NOTIFY inside the writing transaction,
and the LISTEN loop that hears them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

CHANNEL = "storesafe_changes"

log = logging.getLogger(__name__)


def notify(conn: Connection, payload: str) -> None:
    """Tell listening replicas about a change once this transaction commits (PostgreSQL only;
    SQLite has a single server process)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": payload})


def can_listen(db_url: str) -> bool:
    """Whether other replicas may write to this database (PostgreSQL), so notices exist."""
    return make_url(db_url).get_backend_name() == "postgresql"


async def listen(
    db_url: str,
    *,
    on_connect: Callable[[], Awaitable[None]],
    on_notice: Callable[[str], Awaitable[None]],
) -> None:
    """LISTEN on CHANNEL until cancelled, handing each notice's payload to `on_notice`.

    A lost connection is retried with a doubling delay (1 s up to 30 s); `on_connect`
    runs each time the LISTEN is in place, to catch up on what was missed while away.
    """
    import psycopg

    url = make_url(db_url).set(drivername="postgresql")
    dsn = url.render_as_string(hide_password=False)
    delay = 1.0
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                delay = 1.0
                await on_connect()
                async for note in conn.notifies():
                    await on_notice(note.payload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - logged, then retried
            log.warning("lost the PostgreSQL change feed (%s); retrying in %.0f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
