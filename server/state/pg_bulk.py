"""PostgreSQL fast paths for the writer's bulk ops: a whole batch as one JSON value.

An executemany costs psycopg and SQLAlchemy Python time for every row (and a
multi-row INSERT .. RETURNING is re-parsed every time: it is too long for
psycopg's statement cache); so do array parameters (psycopg quotes array items
in Python). Sent instead as one statement over `json_to_recordset` of a single
JSON parameter, a batch costs one C-speed json.dumps in this process and the
parsing happens in PostgreSQL. Used for the hot writes only (check-ins, reports
and the site summaries they move); the same ops on SQLite keep their executemany.

Updates keep the meaning of running the rows one by one, in order: the k-th
update of a site goes into round k, each round is one statement in which a
site appears at most once, and rounds run in order. A key that a row may omit
(OPTIONAL) keeps the stored value where it is missing, as the omitted SET
column did.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql

from server.state.tables import RUNS, SITES

# SET columns a row may leave out (the stored value stays).
OPTIONAL = frozenset({"firebird_json", "last_backup_size"})

_PG_DIALECT = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
_WHERE_TYPES = {"b_site_id": "INTEGER", "b_finished": "TIMESTAMP WITH TIME ZONE"}


def _pg_type(table: Table, column: str) -> str:
    if column in _WHERE_TYPES:
        return _WHERE_TYPES[column]
    return str(table.c[column].type.compile(dialect=_PG_DIALECT))


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _json(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps(rows, default=_json_default, separators=(",", ":"))


def _json_default(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


def _recordset(table: Table, keys: Sequence[str]) -> str:
    """`json_to_recordset(%(rows)s::json) AS v(<key> <type>, ...)`."""
    fields = ", ".join(f"{_q(k)} {_pg_type(table, k)}" for k in keys)
    return f"json_to_recordset(%(rows)s::json) AS v({fields})"


@functools.lru_cache(maxsize=64)
def _update_sql(columns: tuple[str, ...], guard: str) -> str:
    """UPDATE sites from a JSON array: SET `columns` (and updated_at) where `guard` holds."""
    keys = (*columns, "b_site_id", *(("b_finished",) if "v.b_finished" in guard else ()))
    sets = [
        f"{_q(c)} = COALESCE(v.{_q(c)}, s.{_q(c)})" if c in OPTIONAL else f"{_q(c)} = v.{_q(c)}"
        for c in columns
    ]
    sets.append('"updated_at" = %(b_now)s')
    where = "s.id = v.b_site_id" + (f" AND ({guard})" if guard else "")
    # identifiers come from the table definition, values travel as parameters
    return f"UPDATE sites AS s SET {', '.join(sets)} FROM {_recordset(SITES, keys)} WHERE {where}"  # noqa: S608


def update_sites(conn: Connection, params_list: Sequence[dict[str, Any]], *, guard: str) -> None:
    """Apply UPDATEs of sites given as parameter dicts (SET from the column-named keys,
    the row from `b_site_id`, `b_finished` for `guard`), with the one-by-one meaning."""
    rounds: list[list[dict[str, Any]]] = []
    seen: dict[int, int] = {}
    for params in params_list:
        k = seen.get(params["b_site_id"], 0)
        seen[params["b_site_id"]] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(params)
    now = dt.datetime.now(dt.UTC)  # what the column's onupdate would have set
    for rows in rounds:
        columns = sorted({k for row in rows for k in row if not k.startswith("b_")})
        missing = [c for c in columns if c not in OPTIONAL and any(c not in row for row in rows)]
        if missing:
            raise ValueError(f"update rows differ in required columns {missing}")
        conn.exec_driver_sql(
            _update_sql(tuple(columns), guard), {"rows": _json(rows), "b_now": now}
        )


_RUN_COLUMNS = (
    "id",
    "site_id",
    "kind",
    "started_at",
    "finished_at",
    "outcome",
    "verification",
    "error_class",
    "error_message",
    "trigger",
    "received_at",
    "details_json",
)


@functools.lru_cache(maxsize=1)
def _insert_runs_sql() -> str:
    cols = ", ".join(_q(c) for c in _RUN_COLUMNS)
    return (
        f"INSERT INTO runs ({cols}) SELECT {cols} FROM {_recordset(RUNS, _RUN_COLUMNS)} "  # noqa: S608
        "ON CONFLICT DO NOTHING RETURNING 1"
    )


def insert_runs(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    """INSERT the runs (dicts keyed by column), skipping ids already stored; return how
    many were inserted."""
    return len(conn.exec_driver_sql(_insert_runs_sql(), {"rows": _json(rows)}).all())
