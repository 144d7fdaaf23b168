"""Site rows by name: find one (NotFound when missing) or create it on first mention."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from common.errors import NotFound
from server.state.tables import SITES


def insert_ignore(conn: Connection | str, table: Table) -> Any:
    """INSERT .. ON CONFLICT DO NOTHING for the connection's dialect (or the dialect named)."""
    if (conn if isinstance(conn, str) else conn.dialect.name) == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def ensure_site(conn: Connection, name: str, group: str, now: dt.datetime) -> tuple[int, str]:
    """(id, group) of the site, created in `group` when it does not exist yet."""
    conn.execute(insert_ignore(conn, SITES).values(name=name, group=group, created_at=now))
    row = conn.execute(select(SITES.c.id, SITES.c.group).where(SITES.c.name == name)).one()
    return int(row[0]), str(row[1])


def site_id_of(conn: Connection, name: str) -> int:
    """The id of the site named `name`; NotFound when there is none."""
    site_id = conn.execute(select(SITES.c.id).where(SITES.c.name == name)).scalar()
    if site_id is None:
        raise NotFound(f"there is no site named {name!r}")
    return int(site_id)
