"""Enrollment: one-time tokens for a site, traded for an agent's own credential."""

from __future__ import annotations

import dataclasses
import datetime as dt

from common.clock import Clock, human_time
from common.errors import InvalidArgument
from common.names import check_name
from server.domain import credentials, ingest
from server.domain.records import AdminIdentity, AuditRecord
from server.state.base import FleetState

DEFAULT_TTL = dt.timedelta(hours=24)
MAX_TTL = dt.timedelta(days=30)


@dataclasses.dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class Enrolled:
    agent_id: str
    credential: str
    site: str
    group: str


class Enrollment:
    def __init__(self, state: FleetState, clock: Clock) -> None:
        self._state = state
        self._clock = clock

    async def create_token(
        self, admin: AdminIdentity, *, site: str, group: str, ttl: dt.timedelta | None
    ) -> IssuedToken:
        check_name(site, "site")
        if group:
            check_name(group, "group")
        ttl = ttl or DEFAULT_TTL
        if ttl > MAX_TTL:
            raise InvalidArgument("an enrollment token may live at most 30 days")
        now = self._clock.now()
        minted = credentials.mint(credentials.ENROLLMENT)
        expires = now + ttl
        await self._state.create_enrollment_token(
            token_id=minted.id,
            secret_hash=minted.secret_hash,
            site=site,
            group=group,
            created_by=admin.name,
            now=now,
            expires_at=expires,
        )
        await self._state.audit(
            AuditRecord(
                now,
                admin.name,
                "token.create",
                site,
                f"group={group or '-'} expires={human_time(expires)}",
            )
        )
        return IssuedToken(minted.text, expires)

    async def enroll(
        self, *, token: str, site: str, hostname: str, agent_version: str = "", os: str = ""
    ) -> Enrolled:
        request = ingest.enroll(ingest.EnrollInput(token, site, hostname, agent_version, os))
        site, hostname = request.site, request.hostname
        token_id, presented = credentials.parse(token, credentials.ENROLLMENT, "enrollment token")
        minted = credentials.mint(credentials.AGENT)
        now = self._clock.now()
        _site_id, group = await self._state.enroll(
            token_id=token_id,
            presented_hash=presented,
            site=site,
            agent_id=minted.id,
            agent_secret_hash=minted.secret_hash,
            hostname=hostname,
            now=now,
        )
        await self._state.audit(
            AuditRecord(
                now, f"agent:{minted.id}", "agent.enroll", site, f"hostname={hostname[:100]}"
            )
        )
        return Enrolled(minted.id, minted.text, site, group)
