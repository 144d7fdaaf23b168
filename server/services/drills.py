"""Restore drills the admin CLI ran, recorded as runs of their site (kind "drill").

Idempotent by report id like an agent's report: the same report again changes
nothing; a different report under an id already stored (for this site or another)
is refused. Who recorded it is audited.
"""

from __future__ import annotations

from common.clock import Clock
from common.errors import AlreadyExists, PermissionDenied
from common.names import check_name
from server.domain import ingest
from server.domain.records import AdminIdentity, AuditRecord, RunRecord
from server.domain.rules import bad
from server.state.base import FleetState


class Drills:
    def __init__(self, state: FleetState, clock: Clock) -> None:
        self._state = state
        self._clock = clock

    async def record(self, admin: AdminIdentity, site: str, run: ingest.RunInput) -> bool:
        """Store the drill for `site`; True when this very report was stored already."""
        site = check_name(site)
        row = await self._state.get_site(site)  # NotFound names the site
        now = self._clock.now()
        record = ingest.drill_record(run, now)
        await self._check_backup_run(site, record)
        stored = await self._state.get_run(record.id)
        if stored is not None:
            return _replay(stored, record, site)
        try:
            duplicate = await self._state.store_report(site_id=row.id, run=record, now=now)
        except PermissionDenied:  # another site stored this id meanwhile
            raise _taken(record.id) from None
        if duplicate:  # the same id stored meanwhile: judge it like any replay
            stored = await self._state.get_run(record.id)
            return stored is not None and _replay(stored, record, site)
        drill = record.details["drill"]
        await self._state.audit(
            AuditRecord(
                now,
                admin.name,
                "drill.record",
                site,
                f"run={record.id} outcome={record.outcome} "
                f"backup_run={drill.get('backup_run_id', '')}",
            )
        )
        return False

    async def _check_backup_run(self, site: str, record: RunRecord) -> None:
        """A drill may name a backup run the server has not heard of yet (its report may
        still wait in the agent's outbox), but never another site's run or another kind."""
        backup_run_id = str(record.details["drill"].get("backup_run_id", ""))
        if not backup_run_id:
            return
        found = await self._state.get_run(backup_run_id)
        if found is None:
            return
        if found.site != site or found.kind != "backup":
            raise bad(
                "report.drill.backup_run_id", f"run {backup_run_id} is not a backup run of {site}"
            )


def _comparable(run: RunRecord) -> tuple[object, ...]:
    return (
        run.kind,
        run.started_at,
        run.finished_at,
        run.outcome,
        run.error_class,
        run.error_message,
        run.trigger,
        run.details,
    )


def _replay(stored: RunRecord, record: RunRecord, site: str) -> bool:
    if stored.site == site and _comparable(stored) == _comparable(record):
        return True
    raise _taken(record.id)


def _taken(run_id: str) -> AlreadyExists:
    return AlreadyExists(
        f"report {run_id} is recorded already with other content; a new drill needs a new id"
    )
