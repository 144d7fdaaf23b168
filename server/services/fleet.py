"""The admin's view of the fleet: sites with their computed status, runs, audit, revocation."""

from __future__ import annotations

import dataclasses

from common.clock import Clock
from common.errors import InvalidArgument
from server.domain import AdminIdentity, AuditRecord, RunRecord, SiteRow
from server.services.agents import KINDS
from server.services.auth import Authenticator
from server.services.status import SiteFacts, SiteStatus, Status, StatusPolicy, compute_status
from server.state.base import FleetState


@dataclasses.dataclass(frozen=True)
class SiteView:
    row: SiteRow
    status: SiteStatus
    config_revision_desired: int = 0


@dataclasses.dataclass(frozen=True)
class SiteDetail:
    view: SiteView
    active_agents: int
    last_backup: RunRecord | None


def facts_of(row: SiteRow, config_refused: str = "") -> SiteFacts:
    return SiteFacts(
        enrolled_at=row.enrolled_at,
        last_seen_at=row.last_seen_at,
        last_backup_at=row.last_backup_at,
        last_backup_ok=row.last_backup_ok,
        last_backup_error=row.last_backup_error,
        last_good_backup_at=row.last_good_backup_at,
        last_backup_size=row.last_backup_size,
        last_image_sync_at=row.last_image_sync_at,
        last_image_sync_ok=row.last_image_sync_ok,
        last_image_sync_error=row.last_image_sync_error,
        last_validation_errors=row.last_validation_errors,
        last_validation_summary=row.last_validation_summary,
        clock_skew_seconds=row.clock_skew_seconds,
        agent_version=row.agent_version,
        outbox_pending=row.outbox_pending,
        config_refused=config_refused,
        disks=row.disks,
        health=row.health,
    )


class FleetQueries:
    def __init__(
        self,
        state: FleetState,
        clock: Clock,
        auth: Authenticator,
        policy: StatusPolicy | None = None,
    ) -> None:
        self._state = state
        self._clock = clock
        self._auth = auth
        self._policy = policy or StatusPolicy()

    def view(self, row: SiteRow) -> SiteView:
        return SiteView(row, compute_status(facts_of(row), self._policy, self._clock.now()))

    async def list_sites(self, *, status: Status | None = None, group: str = "") -> list[SiteView]:
        views = [self.view(r) for r in await self._state.list_sites(group=group)]
        if status is not None:
            views = [v for v in views if v.status.status == status]
        return views

    async def site(self, name: str) -> SiteDetail:
        row = await self._state.get_site(name)
        runs = await self._state.list_runs(site=name, kind="backup", limit=1)
        agents = await self._state.active_agents(row.id)
        return SiteDetail(self.view(row), agents, runs[0] if runs else None)

    async def runs(self, *, site: str, kind: str, limit: int) -> list[RunRecord]:
        if kind and kind not in KINDS:
            raise InvalidArgument(f"run kind {kind!r} is not one of {', '.join(KINDS)}")
        limit = limit or 20
        if not 1 <= limit <= 1000:
            raise InvalidArgument("limit must be between 1 and 1000")
        return await self._state.list_runs(site=site, kind=kind, limit=limit)

    async def revoke(self, admin: AdminIdentity, site: str) -> int:
        count = await self._state.revoke_agents(site=site, now=self._clock.now())
        self._auth.forget_site(site)
        await self._state.audit(
            AuditRecord(self._clock.now(), admin.name, "agent.revoke", site, f"revoked={count}")
        )
        return count

    async def audit_log(self, *, limit: int) -> list[AuditRecord]:
        limit = limit or 50
        if not 1 <= limit <= 1000:
            raise InvalidArgument("limit must be between 1 and 1000")
        return await self._state.list_audit(limit=limit)
