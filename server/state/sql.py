"""FleetState on SQLAlchemy Core over the SQLModel tables (SQLite or PostgreSQL).

The facade: enrollment, credentials, queries and the audit log. The hot writes
are hot_writes.py, the row mapping rows.py, and the writer (injected) writer.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from common.clock import utc
from common.errors import (
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from server.deferred import Deferred
from server.domain import credentials
from server.domain.records import (
    AdminIdentity,
    AdminTokenRecord,
    AuditRecord,
    CheckInFacts,
    FiguresAccepted,
    RunRecord,
    SiteRow,
)
from server.state import figures_state, hot_writes
from server.state.base import FleetState
from server.state.notify import notify
from server.state.rows import ROW_COLUMNS, admin_record, run_record, site_row, site_rows
from server.state.sites import ensure_site, site_id_of
from server.state.tables import ADMINS, AGENTS, AUDIT, RUNS, SITES, TOKENS
from server.state.writer import BatchWriter

T = TypeVar("T")


_SUMMARY_COLUMNS = [c for c in SITES.c if not c.name.startswith("created")]

# Queued writes beyond which write_soon waits for the commit (backpressure).
SOON_BACKLOG = 5000


class SqlFleetState(FleetState):
    """All writes go through one BatchWriter; reads run in worker threads."""

    def __init__(self, engine: Engine, writer: BatchWriter) -> None:
        """`writer` commits every write of `engine`'s database; the wiring chooses it
        (writer_process.batch_writer: a thread, or a thread with a child process for the
        hot writes) and this state starts it now and stops it in close()."""
        self._engine = engine
        self._writer = writer
        self._writer.start()

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
            return [admin_record(r) for r in rows]

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
            return admin_record(row)

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
        await self._writer.submit(hot_writes.CheckIn(site_id, facts, now))

    async def store_report(
        self, *, site_id: int, run: RunRecord | Deferred[RunRecord], now: dt.datetime
    ) -> bool:
        return await self._writer.submit(hot_writes.Report(site_id, run, now))

    # -- queries ----------------------------------------------------------------

    async def list_sites(self, *, group: str = "") -> list[SiteRow]:
        def fn(conn: Connection) -> list[SiteRow]:
            stmt = select(*ROW_COLUMNS).order_by(SITES.c.name)
            if group:
                stmt = stmt.where(SITES.c.group == group)
            return site_rows(conn.execute(stmt))

        return await self._read_sites(fn)

    async def sites_changed_since(self, since: dt.datetime | None) -> list[SiteRow]:
        def fn(conn: Connection) -> list[SiteRow]:
            stmt = select(*ROW_COLUMNS)
            if since is not None:
                stmt = stmt.where(SITES.c.updated_at >= since)
            return site_rows(conn.execute(stmt))

        return await self._read_sites(fn)

    async def get_site(self, name: str) -> SiteRow:
        def fn(conn: Connection) -> SiteRow:
            row = conn.execute(select(*_SUMMARY_COLUMNS).where(SITES.c.name == name)).first()
            if row is None:
                raise NotFound(f"there is no site named {name!r}")
            return site_row(row)

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

    async def get_run(self, run_id: str) -> RunRecord | None:
        def fn(conn: Connection) -> RunRecord | None:
            stmt = (
                select(RUNS, SITES.c.name.label("site_name"))
                .join(SITES, SITES.c.id == RUNS.c.site_id)
                .where(RUNS.c.id == run_id)
            )
            row = conn.execute(stmt).first()
            return None if row is None else run_record(row, row.site_name)

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


_AGENT_CREDENTIALS = (
    select(AGENTS.c.id, AGENTS.c.secret_hash, AGENTS.c.site_id, SITES.c.name, SITES.c.group)
    .join(SITES, SITES.c.id == AGENTS.c.site_id)
    .where(AGENTS.c.revoked_at.is_(None))
)
_AGENT_CREDENTIAL = _AGENT_CREDENTIALS.where(AGENTS.c.id == bindparam("b_id"))


def _admin_name_taken(name: str) -> AlreadyExists:
    return AlreadyExists(
        f"an active admin token named {name!r} exists already; choose another name "
        "(or revoke that one first)"
    )
