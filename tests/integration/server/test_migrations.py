"""Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine
from sqlmodel import SQLModel

import server.db.models  # noqa: F401
from server.db.engine import make_engine, migrate


def upgraded_to(db_url: str, revision: str) -> Engine:
    """A database migrated up to `revision` only (to write rows as they were then)."""
    from alembic import command
    from alembic.config import Config

    from server.db.engine import _MIGRATIONS

    engine = make_engine(db_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return engine


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

    from sqlalchemy import text

    engine = upgraded_to(db_url, "0005")
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


def test_chunks_indexed_before_blake3_keep_their_sha256(db_url: str) -> None:
    """0011 adds the chunks' digest algorithm: the rows already there are sha256 ones, and
    keep their digest; rows written since name theirs."""
    import datetime as dt

    from sqlalchemy import insert, text

    from server.state.tables import SITES

    engine = upgraded_to(db_url, "0010")
    t0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    with engine.begin() as conn:
        site_id = conn.execute(  # the sites table as of 0010 is the model's
            insert(SITES)
            .values(name="old-shop", group="default", created_at=t0)
            .returning(SITES.c.id)
        ).scalar_one()
        for chunk_id, sha in (("a" * 64, "1" * 64), ("b" * 64, "2" * 64)):
            conn.execute(
                text(
                    "INSERT INTO store_chunks (site_id, chunk_id, size, sha256, stored_at) "
                    "VALUES (:s, :c, 10, :h, :t)"
                ),
                {"s": site_id, "c": chunk_id, "h": sha, "t": t0},
            )
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO store_chunks (site_id, chunk_id, size, sha256, digest_algorithm, "
                "stored_at) VALUES (:s, :c, 10, :h, 'blake3', :t)"
            ),
            {"s": site_id, "c": "c" * 64, "h": "3" * 64, "t": t0},
        )
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT chunk_id, sha256, digest_algorithm FROM store_chunks ORDER BY chunk_id")
        ).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("a" * 64, "1" * 64, "sha256"),
        ("b" * 64, "2" * 64, "sha256"),
        ("c" * 64, "3" * 64, "blake3"),
    ]
