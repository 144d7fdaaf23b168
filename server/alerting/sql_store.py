"""AlertStore on SQLAlchemy Core (SQLite or PostgreSQL), with its own short transactions.

It never uses the batch writer that check-ins and reports go through: alert
work must not queue behind ingest, nor ingest behind it.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from common.clock import utc
from server.alerting.policy import Alerted
from server.alerting.store import (
    AlertStore,
    Change,
    DeliveryRecord,
    Job,
    NewDelivery,
    Outcome,
)
from server.db import models
from server.domain.status import Status
from server.state.threaded import ThreadedSql

STATES: Table = models.AlertState.__table__  # type: ignore[attr-defined]
DELIVERIES: Table = models.AlertDelivery.__table__  # type: ignore[attr-defined]
DIGESTS: Table = models.AlertDigest.__table__  # type: ignore[attr-defined]
CHUNK = 200  # changes per transaction: short write locks on SQLite


class SqlAlertStore(ThreadedSql, AlertStore):
    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self._pg = engine.dialect.name == "postgresql"

    def _insert_ignore(self, table: Table) -> Any:
        dialect = postgresql if self._pg else sqlite
        return dialect.insert(table).on_conflict_do_nothing()

    async def alert_states(self) -> dict[int, Alerted]:
        def fn(conn: Connection) -> dict[int, Alerted]:
            return {
                r.site_id: Alerted(Status(r.status), utc(r.since), utc(r.notified_at), r.token)
                for r in conn.execute(select(STATES))
            }

        return await self._read(fn)

    async def apply(self, changes: list[Change], now: dt.datetime) -> int:
        ordered = sorted(changes, key=lambda c: c.site_id)  # one lock order for all replicas
        applied = 0
        for start in range(0, len(ordered), CHUNK):
            chunk = ordered[start : start + CHUNK]
            applied += await self._write(functools.partial(self._apply, changes=chunk, now=now))
        return applied

    def _apply(self, conn: Connection, *, changes: list[Change], now: dt.datetime) -> int:
        won: list[Change] = []
        fresh = [c for c in changes if c.expected is None and c.state is not None]
        if fresh:  # new alerted states: one INSERT, the conflicting rows lost their race
            many = self._insert_ignore(STATES).values(
                [{"site_id": c.site_id, **_state(c.state)} for c in fresh if c.state]
            )
            inserted = {r[0] for r in conn.execute(many.returning(STATES.c.site_id))}
            won += [c for c in fresh if c.site_id in inserted]
        for c in changes:
            stmt: Any
            if c.expected is not None and c.state is not None:
                stmt = (
                    update(STATES)
                    .where(STATES.c.site_id == c.site_id, STATES.c.token == c.expected)
                    .values(**_state(c.state))
                )
            elif c.expected is not None:
                stmt = delete(STATES).where(
                    STATES.c.site_id == c.site_id, STATES.c.token == c.expected
                )
            else:
                continue
            # RETURNING, not rowcount: the one answer both drivers give alike
            if conn.execute(stmt.returning(STATES.c.site_id)).first() is not None:
                won.append(c)
        rows = [_delivery(d, now) for c in won for d in c.deliveries]
        if rows:
            conn.execute(insert(DELIVERIES), rows)
        return len(won)

    async def claim_digest(
        self, day: str, now: dt.datetime, sites: int, deliveries: list[NewDelivery]
    ) -> bool:
        def fn(conn: Connection) -> bool:
            stmt = self._insert_ignore(DIGESTS).values(day=day, sent_at=now, sites=sites)
            if conn.execute(stmt.returning(DIGESTS.c.day)).first() is None:
                return False
            if deliveries:
                conn.execute(insert(DELIVERIES), [_delivery(d, now) for d in deliveries])
            return True

        return await self._write(fn)

    async def claim(self, now: dt.datetime, lease: dt.timedelta, limit: int) -> list[Job]:
        until = now + lease
        claimable = and_(
            DELIVERIES.c.state == "pending",
            DELIVERIES.c.next_attempt_at <= now,
            or_(DELIVERIES.c.claimed_until.is_(None), DELIVERIES.c.claimed_until < now),
        )
        due = select(DELIVERIES.c.id).where(claimable).order_by(DELIVERIES.c.id).limit(limit)
        if self._pg:
            due = due.with_for_update(skip_locked=True)
        stmt = (
            update(DELIVERIES)
            .where(DELIVERIES.c.id.in_(due.scalar_subquery()), claimable)
            .values(claimed_until=until, attempts=DELIVERIES.c.attempts + 1)
            .returning(
                DELIVERIES.c.id,
                DELIVERIES.c.channel,
                DELIVERIES.c.target_sealed,
                DELIVERIES.c.message_json,
                DELIVERIES.c.attempts,
            )
        )

        def fn(conn: Connection) -> list[Job]:
            found = [Job(r[0], r[1], r[2], r[3], r[4], until) for r in conn.execute(stmt)]
            return sorted(found, key=lambda j: j.id)

        return await self._write(fn)

    async def finish(self, outcomes: list[Outcome], now: dt.datetime) -> None:
        if not outcomes:
            return

        delivered = [o.job for o in outcomes if not o.error]
        failed = [o for o in outcomes if o.error]

        def fn(conn: Connection) -> None:
            leases: dict[dt.datetime, list[int]] = {}
            for job in delivered:  # one statement per lease (a claim leases its batch alike)
                leases.setdefault(job.claimed_until, []).append(job.id)
            for until, ids in leases.items():
                conn.execute(
                    update(DELIVERIES)
                    .where(_leased(ids, until))
                    .values(claimed_until=None, state="delivered", delivered_at=now)
                )
            for o in failed:
                values: dict[str, Any] = {"claimed_until": None, "last_error": o.error}
                if o.retry_at is None:
                    values["state"] = "failed"
                else:
                    values["next_attempt_at"] = o.retry_at
                conn.execute(
                    update(DELIVERIES)
                    .where(_leased([o.job.id], o.job.claimed_until))
                    .values(**values)
                )

        await self._write(fn)

    async def deliveries(self, *, site: str, limit: int) -> list[DeliveryRecord]:
        query = select(DELIVERIES).order_by(DELIVERIES.c.id.desc()).limit(limit)
        if site:
            query = query.where(DELIVERIES.c.site == site)

        def fn(conn: Connection) -> list[DeliveryRecord]:
            return [
                DeliveryRecord(
                    id=r.id,
                    created_at=utc(r.created_at),
                    site=r.site,
                    kind=r.kind,
                    status_from=r.status_from,
                    status_to=r.status_to,
                    channel=r.channel,
                    destination=r.destination,
                    attempts=r.attempts,
                    state=r.state,
                    last_error=r.last_error,
                    next_attempt_at=utc(r.next_attempt_at) if r.state == "pending" else None,
                    delivered_at=utc(r.delivered_at) if r.delivered_at else None,
                )
                for r in conn.execute(query)
            ]

        return await self._read(fn)

    async def totals(self) -> dict[str, int]:
        c = DELIVERIES.c
        errors = func.coalesce(
            func.sum(
                case(
                    (c.state == "delivered", c.attempts - 1),
                    (c.claimed_until.is_not(None), c.attempts - 1),
                    else_=c.attempts,
                )
            ),
            0,
        )

        def fn(conn: Connection) -> dict[str, int]:
            out = {"pending": 0, "delivered": 0, "failed": 0}
            for state, count in conn.execute(select(c.state, func.count()).group_by(c.state)):
                out[state] = int(count)
            out["errors"] = int(
                conn.execute(select(errors).where(c.last_error != "")).scalar() or 0
            )
            return out

        return await self._read(fn)


def _leased(ids: list[int], until: dt.datetime) -> Any:
    """Deliveries still pending under the lease that ends at `until`."""
    return and_(
        DELIVERIES.c.id.in_(ids),
        DELIVERIES.c.claimed_until == until,
        DELIVERIES.c.state == "pending",
    )


def _state(s: Alerted) -> dict[str, Any]:
    return {
        "status": str(s.status),
        "since": s.since,
        "notified_at": s.notified_at,
        "token": s.token,
    }


def _delivery(d: NewDelivery, now: dt.datetime) -> dict[str, Any]:
    n = d.notice
    return {
        "created_at": now,
        "site": n.site,
        "kind": str(n.kind),
        "status_from": n.status_from,
        "status_to": n.status_to,
        "channel": d.channel,
        "destination": d.destination[:255],
        "target_sealed": d.target_sealed,
        "message_json": n.to_json(),
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "claimed_until": None,
        "last_error": "",
        "delivered_at": None,
    }
