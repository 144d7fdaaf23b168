"""Change notices for other server replicas: PostgreSQL NOTIFY inside the writing transaction."""

from __future__ import annotations

from sqlalchemy import Connection, text

CHANNEL = "storesafe_changes"


def notify(conn: Connection, payload: str) -> None:
    """Tell listening replicas about a change once this transaction commits (PostgreSQL only;
    SQLite has a single server process)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": payload})
