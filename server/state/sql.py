"""FleetState on SQLAlchemy Core over the SQLModel tables (SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import orjson
from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from common.clock import utc
from common.errors import (
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from server.deferred import Deferred, resolve
from server.domain import backups, credentials
from server.domain.records import (
    AdminIdentity,
    AdminTokenRecord,
    AuditRecord,
    CheckInFacts,
    FiguresAccepted,
    RunRecord,
    SiteRow,
)
from server.domain.status import Disk
from server.state import bulk, figures_state
from server.state.base import FleetState
from server.state.notify import notify
from server.state.rows import run_record
from server.state.sites import ensure_site, site_id_of
from server.state.tables import ADMINS, AGENTS, AUDIT, RUNS, SITES, TOKENS
from server.state.writer import BatchWriter
from server.state.writer_process import WriterProcess, usable

T = TypeVar("T")


_SUMMARY_COLUMNS = [c for c in SITES.c if not c.name.startswith("created")]

# Queued writes beyond which write_soon waits for the commit (backpressure).
SOON_BACKLOG = 5000


class SqlFleetState(FleetState):
    """All writes go through one BatchWriter; reads run in worker threads."""

    def __init__(self, engine: Engine, *, writer_process: bool = False) -> None:
        """`writer_process`: decode and write check-ins and reports in a child process
        (writer_process.py; `serve` does unless told --writer-thread). In-memory
        SQLite, which a second process cannot open, keeps them in the thread."""
        self._engine = engine
        runner = None
        if writer_process and usable(engine):
            runner = WriterProcess(engine.url.render_as_string(hide_password=False))
        self._writer = BatchWriter(engine, runner=runner)
        self._writer.start()
        self.writes_in_child = runner is not None

    # -- helpers -------------------------------------------------------------

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        def run() -> T:
            with self._engine.connect() as conn:
                return fn(conn)

        return await asyncio.to_thread(run)

    async def _read_sites(self, fn: Callable[[Connection], T]) -> T:
        """A read of the sites table that sees every check-in answered so far."""
        await self._writer.barrier()
        return await self._read(fn)

    def close(self) -> None:
        self._writer.stop()
        self._engine.dispose()

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run a read in a worker thread (shared with the config state)."""
        return await self._read(fn)

    async def write(self, op: Callable[[Connection], T]) -> T:
        """Run a write in the next committed batch (shared with the config state)."""
        return await self._writer.submit(op)

    async def write_soon(self, op: Callable[[Connection], Any]) -> None:
        """Queue a write that may be answered before it commits (config acks: a fan-out
        brings thousands at once); under a backlog the caller waits for the commit."""
        if self._writer.backlog() < SOON_BACKLOG:
            self._writer.enqueue(op)
        else:
            await self._writer.submit(op)

    # -- enrollment and credentials -----------------------------------------

    async def create_enrollment_token(
        self,
        *,
        token_id: str,
        secret_hash: str,
        site: str,
        group: str,
        created_by: str,
        now: dt.datetime,
        expires_at: dt.datetime,
    ) -> None:
        def op(conn: Connection) -> None:
            ensure_site(conn, site, group or "default", now)
            if group:
                conn.execute(update(SITES).where(SITES.c.name == site).values(group=group))
            conn.execute(
                insert(TOKENS).values(
                    id=token_id,
                    site=site,
                    group=group,
                    secret_hash=secret_hash,
                    created_by=created_by,
                    created_at=now,
                    expires_at=expires_at,
                )
            )

        await self._writer.submit(op)

    async def enroll(
        self,
        *,
        token_id: str,
        presented_hash: str,
        site: str,
        agent_id: str,
        agent_secret_hash: str,
        hostname: str,
        now: dt.datetime,
    ) -> tuple[int, str]:
        def op(conn: Connection) -> tuple[int, str]:
            row = conn.execute(select(TOKENS).where(TOKENS.c.id == token_id)).first()
            if row is None or not credentials.same(row.secret_hash, presented_hash):
                raise Unauthenticated("the enrollment token is not valid")
            if row.used_at is not None:
                raise Unauthenticated("the enrollment token was already used")
            if utc(row.expires_at) <= now:
                raise Unauthenticated("the enrollment token has expired")
            if row.site != site:
                raise PermissionDenied(
                    f"the enrollment token was made for site {row.site!r}, not {site!r}"
                )
            claimed = conn.execute(
                update(TOKENS)
                .where(TOKENS.c.id == token_id, TOKENS.c.used_at.is_(None))
                .values(used_at=now)
            )
            if claimed.rowcount != 1:
                raise Unauthenticated("the enrollment token was already used")
            site_id, group = ensure_site(conn, site, row.group or "default", now)
            notify(conn, f"revoke:{site}:{agent_id}")  # every agent of the site but the new one
            conn.execute(
                update(AGENTS)
                .where(AGENTS.c.site_id == site_id, AGENTS.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            conn.execute(
                insert(AGENTS).values(
                    id=agent_id,
                    site_id=site_id,
                    secret_hash=agent_secret_hash,
                    hostname=hostname,
                    created_at=now,
                )
            )
            conn.execute(
                update(SITES)
                .where(SITES.c.id == site_id)
                .values(
                    enrolled_at=now,
                    last_seen_at=now,
                    hostname=hostname,
                    agent_revoked_at=None,
                )
            )
            return site_id, group

        return await self._writer.submit(op)

    async def agent_credential(self, agent_id: str) -> tuple[str, int, str, str] | None:
        def fn(conn: Connection) -> tuple[str, int, str, str] | None:
            row = conn.execute(_AGENT_CREDENTIAL, {"b_id": agent_id}).first()
            return None if row is None else (row[1], row[2], row[3], row[4])

        return await self._read(fn)

    async def agent_credentials(self) -> list[tuple[str, str, int, str, str]]:
        def fn(conn: Connection) -> list[tuple[str, str, int, str, str]]:
            return [(r[0], r[1], r[2], r[3], r[4]) for r in conn.execute(_AGENT_CREDENTIALS)]

        return await self._read(fn)

    async def admin_credential(self, token_id: str) -> tuple[str, AdminIdentity] | None:
        def fn(conn: Connection) -> tuple[str, AdminIdentity] | None:
            row = conn.execute(
                select(ADMINS).where(ADMINS.c.id == token_id, ADMINS.c.revoked_at.is_(None))
            ).first()
            return None if row is None else (row.secret_hash, AdminIdentity(row.id, row.name))

        return await self._read(fn)

    async def create_admin_token(
        self, *, token_id: str, name: str, secret_hash: str, created_by: str, now: dt.datetime
    ) -> None:
        def op(conn: Connection) -> None:
            if conn.execute(_ACTIVE_ADMIN.where(ADMINS.c.name == name)).first() is not None:
                raise _admin_name_taken(name)
            try:  # the unique index decides a race with another replica
                conn.execute(
                    insert(ADMINS).values(
                        id=token_id,
                        name=name,
                        secret_hash=secret_hash,
                        created_at=now,
                        created_by=created_by[:64],
                    )
                )
            except IntegrityError:
                raise _admin_name_taken(name) from None

        await self._writer.submit(op)

    async def list_admin_tokens(self) -> list[AdminTokenRecord]:
        def fn(conn: Connection) -> list[AdminTokenRecord]:
            rows = conn.execute(select(ADMINS).order_by(ADMINS.c.created_at, ADMINS.c.id))
            return [_admin_record(r) for r in rows]

        return await self._read(fn)

    async def revoke_admin_token(
        self, *, name: str, revoked_by: str, now: dt.datetime
    ) -> AdminTokenRecord:
        def op(conn: Connection) -> AdminTokenRecord:
            # Lock every active token (PostgreSQL): two replicas revoking the last two
            # tokens at once cannot both see another one left.
            active = conn.execute(_ACTIVE_ADMIN.with_for_update()).all()
            target = next((r for r in active if r.name == name), None)
            if target is None:
                raise NotFound(f"there is no active admin token named {name!r}")
            done = conn.execute(
                update(ADMINS)
                .where(ADMINS.c.id == target.id, ADMINS.c.revoked_at.is_(None))
                .values(revoked_at=now, revoked_by=revoked_by[:64])
            )
            if done.rowcount != 1:
                raise NotFound(f"there is no active admin token named {name!r}")
            # Counted after the update, under the write lock (SQLite) or the row locks
            # (PostgreSQL): the answer holds whatever runs at the same time.
            if conn.execute(_ACTIVE_ADMIN).first() is None:
                raise FailedPrecondition(
                    f"{name!r} is the last active admin token: revoking it would lock everyone "
                    "out; create another one first (storesafe-server admin-token create)"
                )  # raised inside the transaction: the update is rolled back
            row = conn.execute(select(ADMINS).where(ADMINS.c.id == target.id)).one()
            return _admin_record(row)

        return await self._writer.submit(op)

    async def revoke_agents(self, *, site: str, now: dt.datetime) -> int:
        def op(conn: Connection) -> int:
            site_id = site_id_of(conn, site)
            notify(conn, f"revoke:{site}")
            result = conn.execute(
                update(AGENTS)
                .where(AGENTS.c.site_id == site_id, AGENTS.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            if result.rowcount:
                conn.execute(
                    update(SITES).where(SITES.c.id == site_id).values(agent_revoked_at=now)
                )
            return int(result.rowcount)

        return await self._writer.submit(op)

    async def revocations_since(self, since: dt.datetime) -> list[tuple[str, str | None]]:
        def fn(conn: Connection) -> list[tuple[str, str | None]]:
            sites = (
                select(AGENTS.c.site_id)
                .where(AGENTS.c.revoked_at.is_not(None), AGENTS.c.revoked_at >= since)
                .distinct()
                .subquery()
            )
            active = (
                select(AGENTS.c.site_id, AGENTS.c.id)
                .where(AGENTS.c.revoked_at.is_(None))
                .subquery()
            )
            stmt = (
                select(SITES.c.name, active.c.id)
                .join(sites, sites.c.site_id == SITES.c.id)
                .outerjoin(active, active.c.site_id == SITES.c.id)
            )
            return [(r[0], r[1]) for r in conn.execute(stmt)]

        return await self._read(fn)

    # -- agent traffic --------------------------------------------------------

    async def record_checkin(
        self, *, site_id: int, facts: CheckInFacts | Deferred[CheckInFacts], now: dt.datetime
    ) -> None:
        # Answered once committed, like a report. Answering at once (before the commit)
        # measured slower under load: callers resumed together by their batch's commit
        # send their answers together, in fewer writes to each connection.
        await self._writer.submit(_CheckIn(site_id, facts, now))

    async def store_report(
        self, *, site_id: int, run: RunRecord | Deferred[RunRecord], now: dt.datetime
    ) -> bool:
        return await self._writer.submit(_Report(site_id, run, now))

    # -- queries ----------------------------------------------------------------

    async def list_sites(self, *, group: str = "") -> list[SiteRow]:
        def fn(conn: Connection) -> list[SiteRow]:
            stmt = select(*_ROW_COLUMNS).order_by(SITES.c.name)
            if group:
                stmt = stmt.where(SITES.c.group == group)
            return _site_rows(conn.execute(stmt))

        return await self._read_sites(fn)

    async def sites_changed_since(self, since: dt.datetime | None) -> list[SiteRow]:
        def fn(conn: Connection) -> list[SiteRow]:
            stmt = select(*_ROW_COLUMNS)
            if since is not None:
                stmt = stmt.where(SITES.c.updated_at >= since)
            return _site_rows(conn.execute(stmt))

        return await self._read_sites(fn)

    async def get_site(self, name: str) -> SiteRow:
        def fn(conn: Connection) -> SiteRow:
            row = conn.execute(select(*_SUMMARY_COLUMNS).where(SITES.c.name == name)).first()
            if row is None:
                raise NotFound(f"there is no site named {name!r}")
            return _site_row(row)

        return await self._read_sites(fn)

    async def active_agents(self, site_id: int) -> int:
        def fn(conn: Connection) -> int:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(AGENTS)
                    .where(AGENTS.c.site_id == site_id, AGENTS.c.revoked_at.is_(None))
                ).scalar_one()
            )

        return await self._read(fn)

    async def list_runs(self, *, site: str, kind: str, limit: int) -> list[RunRecord]:
        def fn(conn: Connection) -> list[RunRecord]:
            site_id = site_id_of(conn, site)
            stmt = select(RUNS).where(RUNS.c.site_id == site_id)
            if kind:
                stmt = stmt.where(RUNS.c.kind == kind)
            stmt = stmt.order_by(RUNS.c.finished_at.desc()).limit(limit)
            return [run_record(r, site) for r in conn.execute(stmt)]

        return await self._read(fn)

    async def accept_figures(
        self, *, site: str, run_id: str, by: str, now: dt.datetime
    ) -> FiguresAccepted:
        def op(conn: Connection) -> FiguresAccepted:
            return figures_state.accept(conn, site=site, run_id=run_id, by=by, now=now)

        return await self._writer.submit(op)

    async def audit(self, record: AuditRecord) -> None:
        stmt = insert(AUDIT).values(
            at=record.at,
            actor=record.actor,
            action=record.action,
            target=record.target,
            details=record.details,
        )
        await self._writer.submit(lambda conn: conn.execute(stmt))

    async def list_audit(self, *, limit: int) -> list[AuditRecord]:
        def fn(conn: Connection) -> list[AuditRecord]:
            rows = conn.execute(select(AUDIT).order_by(AUDIT.c.id.desc()).limit(limit))
            return [AuditRecord(utc(r.at), r.actor, r.action, r.target, r.details) for r in rows]

        return await self._read(fn)


_ACTIVE_ADMIN = select(ADMINS.c.id, ADMINS.c.name).where(ADMINS.c.revoked_at.is_(None))


def _admin_name_taken(name: str) -> AlreadyExists:
    return AlreadyExists(
        f"an active admin token named {name!r} exists already; choose another name "
        "(or revoke that one first)"
    )


def _admin_record(r: Any) -> AdminTokenRecord:
    return AdminTokenRecord(
        id=r.id,
        name=r.name,
        created_at=utc(r.created_at),
        created_by=r.created_by,
        revoked_at=utc(r.revoked_at) if r.revoked_at is not None else None,
        revoked_by=r.revoked_by,
    )


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


# -- prepared statements for the hot writes (check-ins and reports) -------------------
#
# Built once: building a statement with literal values costs more Python time than
# executing it. UPDATEs take their SET columns from the parameter keys named after
# columns and their WHERE values from the `b_` keys.

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
# The same conditions for bulk.update_sites.
_BULK_ADVANCE: dict[Any, bulk.Advance] = {
    **{stmt: (col, "<=") for col, stmt in _ADVANCE.items()},
    _ADVANCE_GOOD: ("last_good_backup_at", "<"),
}
_RUN_INSERT_IGNORE = {
    "sqlite": sqlite.insert(RUNS).on_conflict_do_nothing(),
    "postgresql": postgresql.insert(RUNS).on_conflict_do_nothing(),
}
_RUN_INSERT_RETURNING = {k: v.returning(RUNS.c.id) for k, v in _RUN_INSERT_IGNORE.items()}
_AGENT_CREDENTIALS = (
    select(AGENTS.c.id, AGENTS.c.secret_hash, AGENTS.c.site_id, SITES.c.name, SITES.c.group)
    .join(SITES, SITES.c.id == AGENTS.c.site_id)
    .where(AGENTS.c.revoked_at.is_(None))
)
_AGENT_CREDENTIAL = _AGENT_CREDENTIALS.where(AGENTS.c.id == bindparam("b_id"))
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


class _CheckIn:
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
        return (_CheckIn, (self.site_id, self.facts, self.now))

    def prepare(self) -> None:
        if not self.params:
            self.params = _checkin_values(self.site_id, resolve(self.facts), self.now)
            self.bulk_key = ("checkin", "firebird_json" in self.params)

    def __call__(self, conn: Connection) -> None:
        self.prepare()
        conn.execute(_CHECKIN, self.params)

    def run_many(self, conn: Connection, ops: Sequence[_CheckIn]) -> list[Any]:
        for op in ops:
            op.prepare()
        bulk.update_sites(conn, [op.params for op in ops])
        return [None] * len(ops)


class _RaceLost(Exception):
    """Another transaction stored one of a bulk group's report ids meanwhile."""


class _Report:
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
        return (_Report, (self.site_id, self.pending, self.now))

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
        }

    def __call__(self, conn: Connection) -> bool:
        self.prepare()
        stmt = _RUN_INSERT_RETURNING[conn.dialect.name]
        if conn.execute(stmt, self.params).first() is not None:
            _advance_summary(conn, self.site_id, self.run)
            figures_state.check_report(conn, self.site_id, self.run)
            _apply_file_changes(conn, self.site_id, self.run)
            return False
        owner = conn.execute(_RUN_OWNER, {"b_id": self.run.id}).scalar()
        if owner != self.site_id:
            raise PermissionDenied(f"report {self.run.id} belongs to another site")
        return True

    def run_many(self, conn: Connection, ops: Sequence[_Report]) -> list[Any]:
        for op in ops:
            op.prepare()
        ids = list({op.run.id for op in ops})
        owners = bulk.run_owners(conn, ids)
        fresh: list[_Report] = []
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


def _site_row(r: Any) -> SiteRow:
    return _site_rows([tuple(r._mapping[c] for c in _ROW_COLUMNS)])[0]


# SiteRow's fields as columns, in its field order: ListSites turns 10,000 rows into
# SiteRows by position, without a Python call per field.
_ROW_COLUMNS = [
    SITES.c[{"disks": "disks_json", "firebird": "firebird_json"}.get(f.name, f.name)]
    for f in dataclasses.fields(SiteRow)
]
_DATETIME_AT = [i for i, c in enumerate(_ROW_COLUMNS) if isinstance(c.type, DateTime)]
_DISKS_AT = [c.name for c in _ROW_COLUMNS].index("disks_json")
_FIREBIRD_AT = [c.name for c in _ROW_COLUMNS].index("firebird_json")


def _site_rows(rows: Iterable[Sequence[Any]]) -> list[SiteRow]:
    """SiteRows from rows of `_ROW_COLUMNS`: datetimes in UTC, the JSON columns parsed."""
    out = []
    loads = orjson.loads
    for r in rows:
        v = list(r)
        for i in _DATETIME_AT:
            if v[i] is not None:
                v[i] = utc(v[i])
        v[_DISKS_AT] = tuple(
            Disk(d["label"], d["path"], d["total_bytes"], d["free_bytes"])
            for d in loads(v[_DISKS_AT] or "[]")
        )
        firebird = v[_FIREBIRD_AT]
        v[_FIREBIRD_AT] = loads(firebird) if firebird else None
        out.append(SiteRow(*v))
    return out
