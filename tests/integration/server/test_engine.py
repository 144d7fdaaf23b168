"""Settings every connection of make_engine gets, on the real databases."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from server.db.engine import make_engine


def test_postgres_connections_plan_each_statement_anew(pg_url: str) -> None:
    """No generic plan kept from when a table was empty (see _postgres_settings)."""
    engine = make_engine(pg_url)
    try:
        for _ in range(2):  # a new connection, and one back from the pool
            with engine.connect() as conn:
                assert conn.execute(text("SHOW plan_cache_mode")).scalar() == "force_custom_plan"
    finally:
        engine.dispose()


def test_sqlite_connections_use_wal_and_full_sync(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/e.db")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        engine.dispose()
