"""Whether the database `serve` was pointed at is one that `init` set up (it holds an admin token).

`init` puts the first admin token into the database it was given (the data dir's
SQLite file unless `--db` named another). A `serve --db URL` on a data dir that
was initialised on SQLite would otherwise start on an empty database and refuse
every admin token; it stops with what to do instead.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.engine import make_url

from common.errors import FailedPrecondition
from server.db.engine import migrate, reaching
from server.db.models import AdminToken, Site


def migrate_initialised(engine: Engine, *, data_dir: Path, db_url: str) -> None:
    """`require_admin_token`, then bring the schema up to date (what `serve` does first)."""
    require_admin_token(engine, data_dir=data_dir, db_url=db_url)
    migrate(engine)


def require_admin_token(engine: Engine, *, data_dir: Path, db_url: str) -> None:
    """Raise FailedPrecondition when the database has never held an admin token.

    `db_url` is what `serve --db` was given ("" for the data dir's SQLite file).
    Call before migrating: a database without the tables counts as never set up.
    Revoked tokens and enrolled sites count too: their database is in use.
    """
    shown = make_url(engine.url).render_as_string(hide_password=True)
    if engine.dialect.name == "sqlite" and not _sqlite_file_exists(engine):
        count = 0
    else:
        count = _in_use(engine)
    if count:
        return
    if db_url:
        raise FailedPrecondition(
            f"the database {shown} was never initialised (it holds no admin token; `init` "
            "without --db keeps its tokens in the data dir's SQLite file): create its first "
            f"admin token with `storesafe-server admin-token create --data-dir {data_dir} "
            f"--db '{shown}' --name admin`, or run `init` with this --db from the start"
        )
    raise FailedPrecondition(
        f"the data dir's SQLite database {shown.removeprefix('sqlite:///')} holds no admin "
        "token: if `init` was given --db, give `serve` the same --db (or set STORESAFE_DB)"
    )


def _sqlite_file_exists(engine: Engine) -> bool:
    database = engine.url.database or ""
    return database not in ("", ":memory:") and Path(database).exists()


def _in_use(engine: Engine) -> int:
    """Admin tokens (revoked ones too) plus sites: either shows the database was set up."""
    with reaching(engine), engine.connect() as conn:
        if not inspect(conn).has_table(AdminToken.__tablename__):
            return 0
        count = select(func.count()).select_from
        return int(conn.execute(count(AdminToken)).scalar_one()) + int(
            conn.execute(count(Site)).scalar_one()
        )
