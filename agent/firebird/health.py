"""What the agent reads over a plain connection: health signals, schema, row counts."""

from __future__ import annotations

from typing import Any

import fdb

from agent.domain.reports import FirebirdHealth
from common.firebird.connection import FirebirdTarget, attach
from common.firebird.schema import Schema, count_rows, read_schema

# MON$DATABASE.MON$BACKUP_STATE values.
BACKUP_STATE_NORMAL = 0
BACKUP_STATE_STALLED = 1
BACKUP_STATE_MERGE = 2
# Transaction gaps past which garbage piles up (the server may apply its own limits too).
GAP_WARNING = 100_000


def read_health(con: Any) -> FirebirdHealth:
    """Header figures and backup state of the database `con` is attached to."""
    pages = int(con.db_info(fdb.isc_info_db_size_in_pages))
    cur = con.cursor()
    cur.execute("SELECT MON$BACKUP_STATE FROM MON$DATABASE")
    row = cur.fetchone()
    con.commit()
    return FirebirdHealth(
        oit=int(con.oit),
        oat=int(con.oat),
        ost=int(con.ost),
        next_transaction=int(con.next_transaction),
        sweep_interval=int(con.sweep_interval),
        forced_writes=bool(con.forced_writes),
        page_size=int(con.page_size),
        ods=str(con.ods),
        size_bytes=pages * int(con.page_size),
        backup_state=int(row[0]) if row else 0,
        server_version=str(con.firebird_version),
    )


def health_problems(health: FirebirdHealth, *, gap_warning: int = GAP_WARNING) -> list[str]:
    """One sentence per health signal past its limit."""
    out: list[str] = []
    if not health.forced_writes:
        out.append("Forced writes are off: a power cut can corrupt the database.")
    if health.oat - health.oit > gap_warning:
        out.append(
            f"The oldest interesting transaction lags {health.oat - health.oit} behind the "
            "oldest active one: a sweep is needed."
        )
    if health.next_transaction - health.oat > gap_warning:
        out.append(
            f"A transaction has stayed open for {health.next_transaction - health.oat} "
            "transactions: garbage collection is held back."
        )
    return out


def backup_state(con: Any) -> int:
    """MON$BACKUP_STATE: 0 normal, 1 stalled (nbackup lock), 2 merge."""
    cur = con.cursor()
    cur.execute("SELECT MON$BACKUP_STATE FROM MON$DATABASE")
    row = cur.fetchone()
    con.commit()
    return int(row[0]) if row else 0


def read_live(
    target: FirebirdTarget, *, counts: bool = False
) -> tuple[FirebirdHealth, Schema, dict[str, int]]:
    """Health, schema and (optionally) row counts of the live database, in one attachment."""
    with attach(target, what="connecting to the database") as con:
        health = read_health(con)
        schema = read_schema(con)
        rows = count_rows(con, schema.tables) if counts else {}
    return health, schema, rows
