"""The hot writes, check-ins and reports: picklable writer ops and their prepared statements.

Each op is a writer Bulk op (server/state/writer.py) that may run in the writer
process (writer_process.py): a module-level class that pickles with its inputs
only, whose `prepare()` resolves a Deferred input (decoding and validating it, see
server/deferred.py) just before the batch's transaction. What a run moves on its
site is the domain's rule (server/domain/backups.py); this module only turns it
into statements, built once (building a statement with literal values costs more
Python time than executing it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from common.errors import PermissionDenied
from server.deferred import Deferred, resolve
from server.domain import backups
from server.domain.records import CheckInFacts, RunRecord
from server.state import bulk, figures_state, offsite_facts
from server.state.tables import RUNS, SITES


def _advance_summary(conn: Connection, site_id: int, run: RunRecord) -> None:
    """Move the site's latest facts forward; an older run never overwrites a newer one."""
    for stmt, params in _summary_steps(site_id, run):
        conn.execute(stmt, params)


def _summary_steps(site_id: int, run: RunRecord) -> list[tuple[Any, dict[str, Any]]]:
    """The UPDATEs of `_advance_summary` as (prepared statement, parameters)."""
    values = backups.summary_values(run)
    if not values:
        return []
    col = next(iter(values))
    # SET comes from the column-named keys, WHERE from the b_ ones
    values.update(b_site_id=site_id, b_finished=run.finished_at)
    steps: list[tuple[Any, dict[str, Any]]] = [(_ADVANCE[col], values)]
    if backups.passed_drill(run):
        steps.append(
            (
                _ADVANCE_DRILL_OK,
                {
                    "last_drill_ok_at": run.finished_at,
                    "b_site_id": site_id,
                    "b_finished": run.finished_at,
                },
            )
        )
    if backups.good_backup(run):
        steps.append(
            (
                _ADVANCE_GOOD,
                {
                    "last_good_backup_at": run.finished_at,
                    "b_site_id": site_id,
                    "b_finished": run.finished_at,
                },
            )
        )
    return steps


# -- prepared statements -------------------------------------------------------------
#
# UPDATEs take their SET columns from the parameter keys named after columns and their
# WHERE values from the `b_` keys.

_SITE_BY_ID = SITES.c.id == bindparam("b_site_id")
_CHECKIN = update(SITES).where(_SITE_BY_ID)
_ADVANCE = {
    col: update(SITES).where(
        _SITE_BY_ID, SITES.c[col].is_(None) | (SITES.c[col] <= bindparam("b_finished"))
    )
    for col in backups.SUMMARY_COLUMN.values()
}
_ADVANCE_GOOD = update(SITES).where(
    _SITE_BY_ID,
    SITES.c.last_good_backup_at.is_(None) | (SITES.c.last_good_backup_at < bindparam("b_finished")),
)
_ADVANCE_DRILL_OK = update(SITES).where(
    _SITE_BY_ID,
    SITES.c.last_drill_ok_at.is_(None) | (SITES.c.last_drill_ok_at < bindparam("b_finished")),
)
# The same conditions for bulk.update_sites.
_BULK_ADVANCE: dict[Any, bulk.Advance] = {
    **{stmt: (col, "<=") for col, stmt in _ADVANCE.items()},
    _ADVANCE_GOOD: ("last_good_backup_at", "<"),
    _ADVANCE_DRILL_OK: ("last_drill_ok_at", "<"),
}
_RUN_INSERT_IGNORE = {
    "sqlite": sqlite.insert(RUNS).on_conflict_do_nothing(),
    "postgresql": postgresql.insert(RUNS).on_conflict_do_nothing(),
}
_RUN_INSERT_RETURNING = {k: v.returning(RUNS.c.id) for k, v in _RUN_INSERT_IGNORE.items()}
_RUN_OWNER = select(RUNS.c.site_id).where(RUNS.c.id == bindparam("b_id"))


def _checkin_values(site_id: int, facts: CheckInFacts, now: dt.datetime) -> dict[str, Any]:
    """The sites columns a check-in sets (and `b_site_id`, the row)."""
    skew = (facts.agent_time - now).total_seconds() if facts.agent_time else 0.0
    values: dict[str, Any] = {
        "last_seen_at": now,
        "agent_version": facts.agent_version,
        "hostname": facts.hostname,
        "os": facts.os,
        "clock_skew_seconds": skew,
        "config_revision_applied": facts.config_revision,
        "outbox_pending": facts.outbox_pending,
        "disks_json": bulk.json_text([d._asdict() for d in facts.disks]),
    }
    if facts.firebird is not None:
        values["firebird_json"] = bulk.json_text(facts.firebird)
    values["b_site_id"] = site_id
    return values


class CheckIn:
    """One site's check-in facts (a writer Bulk op: a batch's check-ins run together
    through bulk.update_sites, with the meaning of running them in order).

    `prepare()` (the writer calls it before the transaction, in the writer's process)
    resolves deferred facts into the row's values; pickling carries the inputs only.
    """

    __slots__ = ("bulk_key", "facts", "now", "params", "site_id")
    portable = True  # may run in the writer process

    def __init__(
        self, site_id: int, facts: CheckInFacts | Deferred[CheckInFacts], now: dt.datetime
    ) -> None:
        self.site_id = site_id
        self.facts = facts
        self.now = now
        self.params: dict[str, Any] = {}
        self.bulk_key: tuple[str, bool] = ("checkin", False)

    def __reduce__(self) -> tuple[Any, ...]:
        return (CheckIn, (self.site_id, self.facts, self.now))

    def prepare(self) -> None:
        if not self.params:
            self.params = _checkin_values(self.site_id, resolve(self.facts), self.now)
            self.bulk_key = ("checkin", "firebird_json" in self.params)

    def __call__(self, conn: Connection) -> None:
        self.prepare()
        conn.execute(_CHECKIN, self.params)

    def run_many(self, conn: Connection, ops: Sequence[CheckIn]) -> list[Any]:
        for op in ops:
            op.prepare()
        bulk.update_sites(conn, [op.params for op in ops])
        return [None] * len(ops)


class _RaceLost(Exception):
    """Another transaction stored one of a bulk group's report ids meanwhile."""


class Report:
    """Store one run by id (a writer Bulk op).

    Alone: INSERT .. ON CONFLICT DO NOTHING RETURNING; when nothing was inserted the
    report is a replay (PermissionDenied when the id is another site's); otherwise
    the site's summary moves forward. Grouped: one SELECT finds the ids already
    stored, one bulk INSERT stores the new ones (counting the rows it stored) and
    their summary UPDATEs run together with their one-by-one meaning; if that count
    shows that another transaction got in between, the group raises and the writer
    retries every write alone, as above.

    `prepare()` resolves a deferred run (decoding and validating it: its error is
    the write's) before the transaction, in the writer's process.
    """

    __slots__ = ("now", "params", "pending", "run", "site_id")
    bulk_key = "report"
    portable = True  # may run in the writer process

    def __init__(
        self, site_id: int, run: RunRecord | Deferred[RunRecord], now: dt.datetime
    ) -> None:
        self.site_id = site_id
        self.now = now
        self.pending = run
        self.params: dict[str, Any] = {}

    def __reduce__(self) -> tuple[Any, ...]:
        return (Report, (self.site_id, self.pending, self.now))

    def prepare(self) -> None:
        if self.params:
            return
        run = self.run = resolve(self.pending)
        self.params = {
            "id": run.id,
            "site_id": self.site_id,
            "kind": run.kind,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "outcome": run.outcome,
            "verification": run.verification,
            "error_class": run.error_class,
            "error_message": run.error_message,
            "trigger": run.trigger,
            "received_at": self.now,
            "details_json": bulk.json_text(run.details),
            **backups.file_columns(run),
            "backup_run_id": backups.backup_run_of(run),
        }

    def __call__(self, conn: Connection) -> bool:
        self.prepare()
        stmt = _RUN_INSERT_RETURNING[conn.dialect.name]
        if conn.execute(stmt, self.params).first() is not None:
            _advance_summary(conn, self.site_id, self.run)
            figures_state.check_report(conn, self.site_id, self.run)
            _apply_file_changes(conn, self.site_id, self.run)
            offsite_facts.after_report(conn, self.site_id, self.run)
            return False
        owner = conn.execute(_RUN_OWNER, {"b_id": self.run.id}).scalar()
        if owner != self.site_id:
            raise PermissionDenied(f"report {self.run.id} belongs to another site")
        return True

    def run_many(self, conn: Connection, ops: Sequence[Report]) -> list[Any]:
        for op in ops:
            op.prepare()
        ids = list({op.run.id for op in ops})
        owners = bulk.run_owners(conn, ids)
        fresh: list[Report] = []
        replay: list[bool] = []
        for op in ops:
            owner = owners.get(op.run.id)
            if owner is None:
                owners[op.run.id] = op.site_id
                fresh.append(op)
                replay.append(False)
                continue
            if owner != op.site_id:
                raise PermissionDenied(f"report {op.run.id} belongs to another site")
            replay.append(True)
        if fresh:
            inserted = bulk.insert_runs(conn, [op.params for op in fresh])
            if inserted != len(fresh):
                raise _RaceLost(f"{len(fresh) - inserted} report ids were stored meanwhile")
            # Each summary statement sets and tests its own columns only (last_backup_*,
            # last_good_backup_at, last_image_sync_*, last_validation_*), so running each
            # statement's updates together, in their original order, gives the same rows.
            by_stmt: dict[Any, list[dict[str, Any]]] = {}
            for op in fresh:
                for stmt, params in _summary_steps(op.site_id, op.run):
                    by_stmt.setdefault(stmt, []).append(params)
            for stmt, params_list in by_stmt.items():
                bulk.update_sites(conn, params_list, advance=_BULK_ADVANCE[stmt])
            figures_state.check_reports(conn, [(op.site_id, op.run) for op in fresh])
            for op in fresh:  # file changes are rare (retention, re-checks): one by one
                _apply_file_changes(conn, op.site_id, op.run)
                offsite_facts.after_report(conn, op.site_id, op.run)
        return replay


# -- what became of backup files (retention, re-checks) ------------------------------


_RUN_FILE_STATE = update(RUNS).where(
    RUNS.c.site_id == bindparam("b_site_id"),
    RUNS.c.kind == "backup",
    RUNS.c.backup_file == bindparam("b_file"),
)
_DAMAGED_GOOD_AT = (
    select(func.max(RUNS.c.finished_at))
    .where(
        RUNS.c.site_id == bindparam("b_site_id"),
        RUNS.c.kind == "backup",
        RUNS.c.backup_file == bindparam("b_file"),
        RUNS.c.outcome == "succeeded",
        RUNS.c.verification == "passed",
    )
    .scalar_subquery()
)
_SITE_DAMAGED = update(SITES).where(
    _SITE_BY_ID,
    _DAMAGED_GOOD_AT.is_not(None),
    SITES.c.damaged_backup_at.is_(None) | (SITES.c.damaged_backup_at <= _DAMAGED_GOOD_AT),
)


def _apply_file_changes(conn: Connection, site_id: int, run: RunRecord) -> None:
    """Mark the site's backup runs whose file the agent pruned or found damaged or missing;
    a damaged good backup newer than any damaged before is remembered on the site (the
    status shows it while it is the newest good backup)."""
    for change in run.file_changes:
        where = {"b_site_id": site_id, "b_file": change.file}
        conn.execute(_RUN_FILE_STATE.values(file_state=change.state), where)
        if change.state == "damaged":
            conn.execute(
                _SITE_DAMAGED.values(
                    damaged_backup_at=_DAMAGED_GOOD_AT, damaged_backup_file=change.file
                ),
                where,
            )
