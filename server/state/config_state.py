"""Configuration layers, revisions, acknowledgements and remote commands in SQL."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    update,
)

from common.clock import utc
from common.errors import NotFound
from server.domain.records import CommandRecord, LayerValue, RevisionRecord
from server.state.config_base import ConfigState
from server.state.notify import notify
from server.state.sites import site_id_of
from server.state.sql import SqlFleetState
from server.state.tables import COMMANDS, REVISIONS, SITES, VALUES


class SqlConfigState(ConfigState):
    """Config and command storage sharing the fleet state's engine and writer.

    Every write that agents must hear about also sends a PostgreSQL NOTIFY on
    `server.state.notify.CHANNEL` inside its transaction, so other replicas learn of it on
    commit (SQLite has a single process and needs none).
    """

    def __init__(self, fleet: SqlFleetState) -> None:
        self._fleet = fleet

    async def layers(self) -> tuple[list[LayerValue], dict[tuple[str, str], int]]:
        """Every stored key, and the newest revision per layer (scope, target)."""

        def fn(conn: Connection) -> tuple[list[LayerValue], dict[tuple[str, str], int]]:
            values = [
                LayerValue(r.scope, r.target, r.key, r.value_json, r.revision)
                for r in conn.execute(select(VALUES))
            ]
            newest = {
                (r[0], r[1]): int(r[2])
                for r in conn.execute(
                    select(
                        REVISIONS.c.scope, REVISIONS.c.target, func.max(REVISIONS.c.revision)
                    ).group_by(REVISIONS.c.scope, REVISIONS.c.target)
                )
            }
            return values, newest

        return await self._fleet.read(fn)

    async def newest_revision(self) -> int:
        def fn(conn: Connection) -> int:
            return int(conn.execute(select(func.max(REVISIONS.c.revision))).scalar() or 0)

        return await self._fleet.read(fn)

    async def set_layer(
        self,
        *,
        scope: str,
        target: str,
        values: dict[str, str],
        unset: list[str],
        author: str,
        now: dt.datetime,
        shown: dict[str, str],
    ) -> tuple[int, list[str]]:
        """Store a change as one new revision; (0, []) when nothing would change.

        `values` maps key -> JSON text to store; `shown` maps key -> what the
        history may show (secrets masked).
        """

        def op(conn: Connection) -> tuple[int, list[str]]:
            current = {
                r.key: r.value_json
                for r in conn.execute(
                    select(VALUES).where(VALUES.c.scope == scope, VALUES.c.target == target)
                )
            }
            changed = [k for k, v in values.items() if current.get(k) != v]
            removed = [k for k in unset if k in current and k not in values]
            if not changed and not removed:
                return 0, []
            changes = {k: shown[k] for k in changed} | {k: "(unset)" for k in removed}
            revision = int(
                conn.execute(
                    insert(REVISIONS)
                    .values(
                        scope=scope,
                        target=target,
                        author=author,
                        at=now,
                        changes_json=json.dumps(changes, sort_keys=True),
                    )
                    .returning(REVISIONS.c.revision)
                ).scalar_one()
            )
            for k in changed:
                conn.execute(
                    delete(VALUES).where(
                        VALUES.c.scope == scope, VALUES.c.target == target, VALUES.c.key == k
                    )
                )
                conn.execute(
                    insert(VALUES).values(
                        scope=scope, target=target, key=k, value_json=values[k], revision=revision
                    )
                )
            if removed:
                conn.execute(
                    delete(VALUES).where(
                        VALUES.c.scope == scope,
                        VALUES.c.target == target,
                        VALUES.c.key.in_(removed),
                    )
                )
            notify(conn, f"config:{revision}")
            return revision, sorted(changed + removed)

        return await self._fleet.write(op)

    async def record_ack(self, *, site_id: int, revision: int, applied: bool, error: str) -> None:
        """Applied: the running revision moves, and an older refusal is cleared. Refused:
        the reason is kept (the site shows it) until a newer revision is applied."""
        if applied:
            # Answered once queued: a lost ack is repaired by the agent's next check-in,
            # which carries its running revision.
            await self._fleet.write_soon(_Ack(_ACK_APPLIED, {"b_site": site_id, "b_rev": revision}))
        else:
            params = {
                "b_site": site_id,
                "b_rev": revision,
                "b_error": error[:500] or "refused without a reason",
            }
            await self._fleet.write(_Ack(_ACK_REFUSED, params))

    async def history(self, *, limit: int) -> list[RevisionRecord]:
        def fn(conn: Connection) -> list[RevisionRecord]:
            rows = conn.execute(
                select(REVISIONS).order_by(REVISIONS.c.revision.desc()).limit(limit)
            )
            return [
                RevisionRecord(
                    r.revision, r.scope, r.target, r.author, utc(r.at), json.loads(r.changes_json)
                )
                for r in rows
            ]

        return await self._fleet.read(fn)

    # -- commands -------------------------------------------------------------

    async def create_command(
        self, *, command_id: str, site: str, kind: str, author: str, now: dt.datetime
    ) -> CommandRecord:
        def op(conn: Connection) -> CommandRecord:
            site_id = site_id_of(conn, site)
            conn.execute(
                insert(COMMANDS).values(
                    id=command_id, site_id=site_id, kind=kind, created_at=now, created_by=author
                )
            )
            notify(conn, f"command:{site_id}")
            return CommandRecord(command_id, site, site_id, kind, now, author)

        return await self._fleet.write(op)

    async def open_commands(self, *, site_id: int, since: dt.datetime) -> list[CommandRecord]:
        """Commands of the site not yet finished and created after `since`, oldest first."""

        def fn(conn: Connection) -> list[CommandRecord]:
            rows = conn.execute(
                select(COMMANDS, SITES.c.name)
                .join(SITES, SITES.c.id == COMMANDS.c.site_id)
                .where(
                    COMMANDS.c.site_id == site_id,
                    COMMANDS.c.finished_at.is_(None),
                    COMMANDS.c.created_at > since,
                )
                .order_by(COMMANDS.c.created_at)
            )
            return [_command(r) for r in rows]

        return await self._fleet.read(fn)

    async def sites_with_open_commands(self, *, since: dt.datetime) -> set[int]:
        """Ids of the sites with a command not finished and created after `since`."""

        def fn(conn: Connection) -> set[int]:
            rows = conn.execute(
                select(COMMANDS.c.site_id)
                .where(COMMANDS.c.finished_at.is_(None), COMMANDS.c.created_at > since)
                .distinct()
            )
            return {int(r[0]) for r in rows}

        return await self._fleet.read(fn)

    async def mark_delivered(self, *, ids: list[str], now: dt.datetime) -> None:
        stmt = (
            update(COMMANDS)
            .where(COMMANDS.c.id.in_(ids), COMMANDS.c.delivered_at.is_(None))
            .values(delivered_at=now)
        )
        await self._fleet.write(lambda conn: conn.execute(stmt))

    async def finish_command(
        self, *, site_id: int, command_id: str, outcome: str, message: str, now: dt.datetime
    ) -> None:
        """Record a command's outcome once; a repeated ack changes nothing."""

        def op(conn: Connection) -> None:
            owner = conn.execute(
                select(COMMANDS.c.site_id).where(COMMANDS.c.id == command_id)
            ).scalar()
            if owner is None or owner != site_id:
                raise NotFound(f"there is no command {command_id!r} for this site")
            conn.execute(
                update(COMMANDS)
                .where(COMMANDS.c.id == command_id, COMMANDS.c.finished_at.is_(None))
                .values(
                    finished_at=now,
                    outcome=outcome,
                    message=message[:2000],
                    delivered_at=func.coalesce(COMMANDS.c.delivered_at, now),
                )
            )

        await self._fleet.write(op)

    async def expire_commands(self, *, before: dt.datetime, now: dt.datetime) -> int:
        stmt = (
            update(COMMANDS)
            .where(COMMANDS.c.finished_at.is_(None), COMMANDS.c.created_at <= before)
            .values(
                finished_at=now, outcome="expired", message="the agent did not pick it up in time"
            )
        )
        return int(await self._fleet.write(lambda conn: conn.execute(stmt).rowcount))

    async def list_commands(self, *, site: str, limit: int) -> list[CommandRecord]:
        def fn(conn: Connection) -> list[CommandRecord]:
            site_id = site_id_of(conn, site)
            rows = conn.execute(
                select(COMMANDS, SITES.c.name)
                .join(SITES, SITES.c.id == COMMANDS.c.site_id)
                .where(COMMANDS.c.site_id == site_id)
                .order_by(COMMANDS.c.created_at.desc())
                .limit(limit)
            )
            return [_command(r) for r in rows]

        return await self._fleet.read(fn)


_REFUSAL_OLDER = SITES.c.config_refused_revision <= bindparam("b_rev")
_ACK_APPLIED = (
    update(SITES)
    .where(SITES.c.id == bindparam("b_site"))
    .values(
        config_revision_applied=bindparam("b_rev"),
        config_refused=case((_REFUSAL_OLDER, ""), else_=SITES.c.config_refused),
        config_refused_revision=case((_REFUSAL_OLDER, 0), else_=SITES.c.config_refused_revision),
    )
)
_ACK_REFUSED = (
    update(SITES)
    .where(SITES.c.id == bindparam("b_site"))
    .values(config_refused=bindparam("b_error"), config_refused_revision=bindparam("b_rev"))
)


class _Ack:
    """An agent's config ack (a writer Bulk op: a fan-out's acks run as one executemany)."""

    __slots__ = ("bulk_key", "params", "stmt")

    def __init__(self, stmt: Any, params: dict[str, Any]) -> None:
        self.stmt = stmt
        self.params = params
        self.bulk_key = ("ack", id(stmt))

    def __call__(self, conn: Connection) -> Any:
        return conn.execute(self.stmt, self.params)

    def run_many(self, conn: Connection, ops: Sequence[_Ack]) -> list[Any]:
        conn.execute(self.stmt, [op.params for op in ops])
        return [None] * len(ops)


def _opt(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else utc(value)


def _command(r: Any) -> CommandRecord:
    return CommandRecord(
        id=r.id,
        site=r.name,
        site_id=r.site_id,
        kind=r.kind,
        created_at=utc(r.created_at),
        created_by=r.created_by,
        delivered_at=_opt(r.delivered_at),
        finished_at=_opt(r.finished_at),
        outcome=r.outcome,
        message=r.message,
    )
