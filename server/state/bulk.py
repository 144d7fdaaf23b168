"""Fast paths for the writer's bulk ops (check-ins, reports and the site summaries
they move): a batch's rows in one statement, without SQLAlchemy's work per row.

Through SQLAlchemy an executemany costs Python time for every row (building its
parameters, formatting its datetimes) on top of the database's own work; on a
busy server that was as much CPU as the gRPC calls that brought the rows.

- PostgreSQL: one statement over `json_to_recordset` of a single JSON parameter,
  so a batch costs one orjson.dumps here (datetimes included; the standard json
  module, calling back into Python for each datetime, took 8x as long) and the
  parsing happens in the server (an executemany also costs psycopg Python time
  per row, and a multi-row INSERT .. RETURNING is too long for psycopg's statement
  cache).
- SQLite: the driver's own executemany over plain parameter dicts (a loop in C;
  SQLite's json_each was slower, as json_extract parses each row once per field).

Updates keep the meaning of running the rows one by one, in order: an
executemany on SQLite; on PostgreSQL the k-th update of a site goes into round k,
each round is one statement in which a site appears at most once, and rounds run
in order. A key that a row may omit (OPTIONAL) keeps the stored value where it is
missing, as the omitted SET column did.

Datetimes travel as text: ISO 8601 with offset on PostgreSQL; on SQLite the exact
text SQLAlchemy stores there (UTC, `YYYY-MM-DD HH:MM:SS.ffffff`), so that rows
written either way compare and sort as one.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from typing import Any

import orjson
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


def sqlite_time(value: dt.datetime) -> str:
    """A datetime as SQLAlchemy stores it in SQLite: UTC wall time with microseconds."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.isoformat(" ", "microseconds")[:26]


def json_text(value: Any) -> str:
    """`value` as JSON text (orjson: several times the speed of json.dumps); datetimes
    as ISO 8601, which PostgreSQL parses."""
    return orjson.dumps(value).decode()


def _pg_rows(table: Table, keys: Sequence[str]) -> str:
    """`json_to_recordset(%(rows)s::json) AS v(<key> <type>, ...)`."""
    fields = ", ".join(f"{_q(k)} {_pg_type(table, k)}" for k in keys)
    return f"json_to_recordset(%(rows)s::json) AS v({fields})"


Advance = tuple[str, str]
"""(column, comparison): update a site only where `column` is NULL or `column
<comparison> b_finished` (an older run never overwrites a newer one)."""


def _set_where(
    columns: tuple[str, ...], advance: Advance | None, *, row: str, value: Callable[[str], str]
) -> tuple[str, str]:
    """SET and WHERE of a site update: `row` names the stored row ("" for the table
    itself), `value(key)` is the SQL of an update value."""
    stored = f"{row}." if row else ""
    sets = [
        f"{_q(c)} = COALESCE({value(c)}, {stored}{_q(c)})"
        if c in OPTIONAL
        else f"{_q(c)} = {value(c)}"
        for c in columns
    ]
    sets.append(f'"updated_at" = {value("b_now")}')
    where = f"{stored}id = {value('b_site_id')}"
    if advance:
        col, cmp = f"{stored}{_q(advance[0])}", advance[1]
        where += f" AND ({col} IS NULL OR {col} {cmp} {value('b_finished')})"
    # identifiers come from the table definition, values travel as parameters
    return ", ".join(sets), where


@functools.lru_cache(maxsize=128)
def _pg_update_sql(columns: tuple[str, ...], advance: Advance | None) -> str:
    keys = (*columns, "b_site_id", *(("b_finished",) if advance else ()))
    sets, where = _set_where(
        columns, advance, row="s", value=lambda k: "%(b_now)s" if k == "b_now" else f"v.{_q(k)}"
    )
    return f"UPDATE sites AS s SET {sets} FROM {_pg_rows(SITES, keys)} WHERE {where}"  # noqa: S608


@functools.lru_cache(maxsize=128)
def _sqlite_update_sql(columns: tuple[str, ...], advance: Advance | None) -> str:
    sets, where = _set_where(columns, advance, row="", value=lambda k: f":{k}")
    return f"UPDATE sites SET {sets} WHERE {where}"  # noqa: S608


def _sqlite_row(row: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """`row` as driver parameters: every key present (None where omitted), datetimes as text."""
    out = {}
    for k in keys:
        v = row.get(k)
        out[k] = sqlite_time(v) if isinstance(v, dt.datetime) else v
    return out


def update_sites(
    conn: Connection, params_list: Sequence[dict[str, Any]], *, advance: Advance | None = None
) -> None:
    """Apply UPDATEs of sites given as parameter dicts (SET from the column-named keys,
    the row from `b_site_id`, `b_finished` for `advance`), with the one-by-one meaning."""
    if not params_list:
        return
    now = dt.datetime.now(dt.UTC)  # what the column's onupdate would have set
    if conn.dialect.name == "sqlite":
        columns = _columns(params_list)
        keys = (*columns, "b_site_id", *(("b_finished",) if advance else ()))
        rows = [_sqlite_row(row, keys) for row in params_list]
        stamp = sqlite_time(now)
        for row in rows:
            row["b_now"] = stamp
        conn.exec_driver_sql(_sqlite_update_sql(columns, advance), rows)  # in order
        return
    rounds: list[list[dict[str, Any]]] = []
    seen: dict[int, int] = {}
    for params in params_list:
        k = seen.get(params["b_site_id"], 0)
        seen[params["b_site_id"]] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(params)
    for rows_k in rounds:
        conn.exec_driver_sql(
            _pg_update_sql(_columns(rows_k), advance), {"rows": json_text(rows_k), "b_now": now}
        )


def _columns(rows: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    """The SET columns of `rows`; every row has the required ones."""
    columns = tuple(sorted({k for row in rows for k in row if not k.startswith("b_")}))
    missing = [c for c in columns if c not in OPTIONAL and any(c not in row for row in rows)]
    if missing:
        raise ValueError(f"update rows differ in required columns {missing}")
    return columns


RUN_COLUMNS = (
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
    "backup_file",
    "file_state",
    "backup_run_id",
)
_COLS = ", ".join(_q(c) for c in RUN_COLUMNS)
_PG_INSERT_RUNS = (
    f"INSERT INTO runs ({_COLS}) SELECT {_COLS} FROM {_pg_rows(RUNS, RUN_COLUMNS)} "  # noqa: S608
    "ON CONFLICT DO NOTHING"
)


_SQLITE_INSERT_RUNS = (
    f"INSERT INTO runs ({_COLS}) VALUES ({', '.join(':' + c for c in RUN_COLUMNS)}) "  # noqa: S608
    "ON CONFLICT DO NOTHING"
)


def insert_runs(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    """INSERT the runs (dicts keyed by column), skipping ids already stored; return how
    many were inserted."""
    if conn.dialect.name == "sqlite":
        params = [_sqlite_row(row, RUN_COLUMNS) for row in rows]
        return int(conn.exec_driver_sql(_SQLITE_INSERT_RUNS, params).rowcount)
    return int(conn.exec_driver_sql(_PG_INSERT_RUNS, {"rows": json_text(rows)}).rowcount)


_PG_RUN_OWNERS = f"SELECT id, site_id FROM {_q(RUNS.name)} WHERE id = ANY(%(ids)s)"  # noqa: S608
_SQLITE_RUN_OWNERS = (
    f"SELECT id, site_id FROM {_q(RUNS.name)} "  # noqa: S608 - the table's own name
    "WHERE id IN (SELECT value FROM json_each(?))"
)


def run_owners(conn: Connection, ids: Sequence[str]) -> dict[str, int]:
    """{run id: site id} of those of `ids` already stored (one statement, whatever the
    number of ids: an expanding IN is compiled anew for every length)."""
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql(_SQLITE_RUN_OWNERS, (json_text(list(ids)),))
    else:
        rows = conn.exec_driver_sql(_PG_RUN_OWNERS, {"ids": list(ids)})
    return {r[0]: r[1] for r in rows}
