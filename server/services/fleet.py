"""The admin's view of the fleet: sites with their computed status, runs, audit, revocation,
and accepting a site's changed backup figures."""

from __future__ import annotations

import dataclasses
import datetime as dt

from common.clock import Clock
from common.errors import InvalidArgument
from server.domain import rules
from server.domain.ingest import ALL_KINDS
from server.domain.records import (
    AdminIdentity,
    AuditRecord,
    FiguresAccepted,
    RunRecord,
    SiteRow,
    SiteView,
)
from server.domain.status import SiteFacts, Status, StatusPolicy, compute_status
from server.services.push import ConfigHub
from server.services.revocation import Revocations
from server.services.sitecache import SiteCache
from server.state.base import FleetState

NO_AGENT = "no agent"
"""The rollout state of a site no agent has enrolled for yet."""


@dataclasses.dataclass(frozen=True)
class RolloutRow:
    site: str
    group: str
    desired_revision: int
    applied_revision: int
    state: str  # applied | pending | refused | offline | no agent
    refused: str
    last_seen_at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class SiteDetail:
    view: SiteView
    active_agents: int
    last_backup: RunRecord | None


def facts_of(row: SiteRow, desired_revision: int = 0) -> SiteFacts:
    refused = row.config_refused if row.config_refused_revision >= desired_revision else ""
    return SiteFacts(
        site=row.name,
        agent_revoked_at=row.agent_revoked_at,
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
        last_image_sync_warning=row.last_image_sync_warning,
        last_validation_errors=row.last_validation_errors,
        last_validation_summary=row.last_validation_summary,
        clock_skew_seconds=row.clock_skew_seconds,
        agent_version=row.agent_version,
        outbox_pending=row.outbox_pending,
        config_refused=refused,
        disks=row.disks,
        health=row.health,
        figures_change=row.figures_change,
        damaged_backup_at=row.damaged_backup_at,
        damaged_backup_file=row.damaged_backup_file,
        last_offsite_at=row.last_offsite_at,
        last_offsite_backup_at=row.last_offsite_backup_at,
        store_damaged_chunks=row.store_damaged_chunks,
        store_damage_summary=row.store_damage_summary,
    )


class FleetQueries:
    def __init__(
        self,
        state: FleetState,
        clock: Clock,
        revocations: Revocations,
        hub: ConfigHub,
        policy: StatusPolicy | None = None,
    ) -> None:
        self._state = state
        self._clock = clock
        self._revocations = revocations
        self._hub = hub
        self._policy = policy or StatusPolicy()
        self._policies: dict[tuple[float, float, float, bool, bool, float], StatusPolicy] = {}
        self._cache = SiteCache(state, self)

    def now(self) -> dt.datetime:
        return self._clock.now()

    def config_revision(self) -> int:
        return self._hub.snapshot.revision

    def policy_for(self, row: SiteRow) -> StatusPolicy:
        """The server's policy with the site's status.* keys where a layer sets them."""
        snap = self._hub.snapshot
        stale = snap.lookup(row.name, row.group, "status.stale_after_hours")
        offline = snap.lookup(row.name, row.group, "status.offline_after_minutes")
        images_stale = snap.lookup(row.name, row.group, "status.image_sync_stale_hours")
        lag = snap.lookup(row.name, row.group, "status.offsite_lag_hours")
        key = (
            self._policy.stale_after_hours if stale is None else float(stale),
            self._policy.offline_after_minutes if offline is None else float(offline),
            self._policy.image_sync_stale_after_hours
            if images_stale is None
            else float(images_stale),
            bool(snap.lookup(row.name, row.group, "images.dir")),
            snap.lookup(row.name, row.group, "upload.enabled") is True,
            self._policy.offsite_lag_hours if lag is None else float(lag),
        )
        policy = self._policies.get(key)
        if policy is None:
            policy = dataclasses.replace(
                self._policy,
                stale_after_hours=key[0],
                offline_after_minutes=key[1],
                image_sync_stale_after_hours=key[2],
                image_sync_configured=key[3],
                upload_enabled=key[4],
                offsite_lag_hours=key[5],
            )
            self._policies[key] = policy
        return policy

    def view(self, row: SiteRow) -> SiteView:
        desired = self._hub.snapshot.desired_revision(row.name, row.group)
        status = compute_status(facts_of(row, desired), self.policy_for(row), self._clock.now())
        return SiteView(row, status, desired)

    async def rollout(self, *, group: str = "") -> list[RolloutRow]:
        out = []
        for view in await self.list_sites(group=group):
            r = view.row
            desired, applied = view.config_revision_desired, r.config_revision_applied
            refused = r.config_refused if r.config_refused_revision >= desired else ""
            if r.enrolled_at is None:
                state = NO_AGENT  # nothing to apply it: not "applied"
            elif desired == 0 or applied >= desired:
                state = "applied"
            elif refused:
                state = "refused"
            elif view.status.status is Status.OFFLINE:
                state = "offline"
            else:
                state = "pending"
            out.append(
                RolloutRow(r.name, r.group, desired, applied, state, refused, r.last_seen_at)
            )
        return out

    async def list_sites(self, *, status: str = "", group: str = "") -> list[SiteView]:
        """Sites in the group (all when ""), with the status ("" for any); a status the
        server does not know is refused, never read as "any"."""
        rules.choice("status", status, tuple(Status), required=False)
        views = await self._cache.views()
        if group:
            views = [v for v in views if v.row.group == group]
        if status:
            views = [v for v in views if v.status.status == status]
        return views

    async def site(self, name: str) -> SiteDetail:
        row = await self._state.get_site(name)
        runs = await self._state.list_runs(site=name, kind="backup", limit=1)
        agents = await self._state.active_agents(row.id)
        return SiteDetail(self.view(row), agents, runs[0] if runs else None)

    async def runs(self, *, site: str, kind: str, limit: int) -> list[RunRecord]:
        rules.choice("kind", kind, ALL_KINDS, required=False)  # "" lists every kind
        limit = limit or 20
        if not 1 <= limit <= 1000:
            raise InvalidArgument("limit must be between 1 and 1000")
        return await self._state.list_runs(site=site, kind=kind, limit=limit)

    async def revoke(self, admin: AdminIdentity, site: str) -> int:
        count = await self._state.revoke_agents(site=site, now=self._clock.now())
        await self._revocations.apply(site)  # other replicas: by the notice
        await self._state.audit(
            AuditRecord(self._clock.now(), admin.name, "agent.revoke", site, f"revoked={count}")
        )
        return count

    async def accept_change(
        self, admin: AdminIdentity, site: str, *, run_id: str
    ) -> FiguresAccepted:
        """Accept a good backup's figures (`run_id`, or the newest) as the site's baseline
        for the wrong-database guard (server/domain/figures.py); who and what is audited."""
        now = self._clock.now()
        done = await self._state.accept_figures(site=site, run_id=run_id, by=admin.name, now=now)
        cleared = f" cleared={done.cleared[:200]!r}" if done.cleared else ""
        await self._state.audit(
            AuditRecord(now, admin.name, "figures.accept", site, f"run={done.run_id}{cleared}")
        )
        return done

    async def audit_log(self, *, limit: int) -> list[AuditRecord]:
        limit = limit or 50
        if not 1 <= limit <= 1000:
            raise InvalidArgument("limit must be between 1 and 1000")
        return await self._state.list_audit(limit=limit)
