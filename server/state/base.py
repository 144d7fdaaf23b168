"""The storage contract every fleet-state implementation honours."""

from __future__ import annotations

import abc
import datetime as dt

from server.deferred import Deferred
from server.domain.records import (
    AdminIdentity,
    AdminTokenRecord,
    AuditRecord,
    CheckInFacts,
    FiguresAccepted,
    RunRecord,
    SiteRow,
)


class FleetState(abc.ABC):
    """Durable fleet state. Every write method MUST be durable when it returns."""

    @abc.abstractmethod
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
        """Store a one-time token. The site row MUST exist afterwards (status `never`)."""

    @abc.abstractmethod
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
        """Consume the token and register the agent atomically; return (site id, group).

        MUST raise Unauthenticated for an unknown, wrong, expired or used token,
        and PermissionDenied when the token belongs to another site. A token MUST
        be usable once only, even under concurrent use. Earlier agents of the
        site MUST be revoked (the new enrollment replaces them).
        """

    @abc.abstractmethod
    async def agent_credential(self, agent_id: str) -> tuple[str, int, str, str] | None:
        """(secret hash, site id, site name, group) of an active agent, or None."""

    @abc.abstractmethod
    async def agent_credentials(self) -> list[tuple[str, str, int, str, str]]:
        """(agent id, secret hash, site id, site name, group) of every active agent."""

    @abc.abstractmethod
    async def admin_credential(self, token_id: str) -> tuple[str, AdminIdentity] | None:
        """(secret hash, identity) of an active admin token, or None."""

    @abc.abstractmethod
    async def create_admin_token(
        self, *, token_id: str, name: str, secret_hash: str, created_by: str, now: dt.datetime
    ) -> None:
        """Store an admin token. MUST raise AlreadyExists when an active token has the
        name, even under concurrent creation (names of active tokens are unique)."""

    @abc.abstractmethod
    async def list_admin_tokens(self) -> list[AdminTokenRecord]:
        """Every admin token, active and revoked, oldest first (never a hash)."""

    @abc.abstractmethod
    async def revoke_admin_token(
        self, *, name: str, revoked_by: str, now: dt.datetime
    ) -> AdminTokenRecord:
        """Revoke the active token named `name`; return it as revoked.

        MUST raise NotFound when no active token has the name, and FailedPrecondition
        when it is the last active one (the fleet is never left without an admin),
        also when two revocations race.
        """

    @abc.abstractmethod
    async def record_checkin(
        self, *, site_id: int, facts: CheckInFacts | Deferred[CheckInFacts], now: dt.datetime
    ) -> None:
        """Store the latest facts of a check-in; last_seen_at MUST become `now`.
        Deferred facts are resolved by the writer (server/deferred.py)."""

    @abc.abstractmethod
    async def store_report(
        self, *, site_id: int, run: RunRecord | Deferred[RunRecord], now: dt.datetime
    ) -> bool:
        """Store a run once by id; return True when it was already stored (a replay).
        A Deferred run is resolved by the writer; the error it raises is this call's.

        A replay MUST change nothing. An id stored for another site MUST raise
        PermissionDenied. The site's summary facts MUST only move forward in time.
        """

    @abc.abstractmethod
    async def list_sites(self, *, group: str = "") -> list[SiteRow]:
        """All sites (or one group's), ordered by name."""

    @abc.abstractmethod
    async def sites_changed_since(self, since: dt.datetime | None) -> list[SiteRow]:
        """Sites inserted or updated at or after `since` (wall clock), or all for None.

        Every write to a site MUST move its change time forward.
        """

    @abc.abstractmethod
    async def get_site(self, name: str) -> SiteRow:
        """One site; MUST raise NotFound when there is none."""

    @abc.abstractmethod
    async def active_agents(self, site_id: int) -> int:
        """How many unrevoked agents the site has."""

    @abc.abstractmethod
    async def list_runs(self, *, site: str, kind: str, limit: int) -> list[RunRecord]:
        """A site's runs, newest first; MUST raise NotFound for an unknown site."""

    @abc.abstractmethod
    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run stored under `run_id` (its `site` set), whatever its site; None when
        there is none."""

    @abc.abstractmethod
    async def revoke_agents(self, *, site: str, now: dt.datetime) -> int:
        """Revoke every active agent of the site; return how many.

        When any was revoked the site's `agent_revoked_at` MUST become `now` (until an
        agent enrolls again), and other replicas MUST be told (a `revoke:SITE` notice).
        """

    @abc.abstractmethod
    async def revocations_since(self, since: dt.datetime) -> list[tuple[str, str | None]]:
        """(site, its active agent id or None) of every site with an agent revoked at
        or after `since` (the safety net for a lost revocation notice)."""

    @abc.abstractmethod
    async def accept_figures(
        self, *, site: str, run_id: str, by: str, now: dt.datetime
    ) -> FiguresAccepted:
        """Make a good backup's figures (`run_id`, or the newest good backup's) the
        site's baseline for the wrong-database guard, recording who accepted them.

        MUST raise NotFound for an unknown site or run, FailedPrecondition for a run
        that is not a verified backup with figures; MUST clear the site's open change
        unless the newest good backup still differs sharply from the new baseline.
        """

    @abc.abstractmethod
    async def audit(self, record: AuditRecord) -> None:
        """Append to the audit log."""

    @abc.abstractmethod
    async def list_audit(self, *, limit: int) -> list[AuditRecord]:
        """The newest audit entries first."""

    @abc.abstractmethod
    def close(self) -> None:
        """Finish pending writes and release connections."""
