"""Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import server.db.models  # noqa: F401
from server.db.engine import make_engine, migrate


def test_migrations_match_models(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations differ; add a migration: {diff}"


def test_active_admin_tokens_that_shared_a_name_get_unique_names(db_url: str) -> None:
    """Duplicate names were allowed before 0006: the oldest keeps the name, the others
    get their id appended, so the unique index can be made and revoke-by-name works."""
    import datetime as dt

    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from server.db.engine import _MIGRATIONS

    engine = make_engine(db_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0005")
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with engine.begin() as conn:
        for i, (token_id, name, revoked) in enumerate(
            [("aaa1", "admin", None), ("bbb2", "admin", None), ("ccc3", "admin", t0)]
        ):
            conn.execute(
                text(
                    "INSERT INTO admin_tokens (id, name, secret_hash, created_at, revoked_at) "
                    "VALUES (:i, :n, 'h', :c, :r)"
                ),
                {"i": token_id, "n": name, "c": t0 + dt.timedelta(minutes=i), "r": revoked},
            )
    migrate(engine)
    with engine.connect() as conn:
        names = dict(conn.execute(text("SELECT id, name FROM admin_tokens")).all())
    engine.dispose()
    assert names == {"aaa1": "admin", "bbb2": "admin-bbb2", "ccc3": "admin"}
