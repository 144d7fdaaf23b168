"""What agents do once enrolled: check in and deliver run reports."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator

from common.clock import Clock
from common.errors import InvalidArgument, PermissionDenied
from server.domain import AgentIdentity, CheckInFacts, RunRecord
from server.services.push import ConfigHub, Directive
from server.state.base import FleetState
from server.state.config_state import SqlConfigState

KINDS = ("backup", "image-sync", "upload", "validation")
OUTCOMES = ("succeeded", "failed")
COMMAND_OUTCOMES = ("succeeded", "failed", "rejected")
_MAX_FUTURE = dt.timedelta(days=1)


@dataclasses.dataclass(frozen=True)
class CheckInReply:
    server_time: dt.datetime
    desired_config_revision: int
    checkin_interval_seconds: int


class AgentTraffic:
    def __init__(
        self,
        state: FleetState,
        config: SqlConfigState,
        hub: ConfigHub,
        clock: Clock,
        *,
        checkin_interval: int = 60,
    ) -> None:
        self._state = state
        self._config = config
        self._hub = hub
        self._clock = clock
        self._interval = checkin_interval

    async def check_in(
        self, who: AgentIdentity, facts: CheckInFacts, *, claimed_site: str = ""
    ) -> CheckInReply:
        _own_site(who, claimed_site)
        now = self._clock.now()
        await self._state.record_checkin(site_id=who.site_id, facts=facts, now=now)
        desired = self._hub.snapshot.desired_revision(who.site, who.group)
        return CheckInReply(now, desired, self._interval)

    async def report(self, who: AgentIdentity, run: RunRecord, *, claimed_site: str = "") -> bool:
        """Store a run; True when it was a replay of one already stored."""
        _own_site(who, claimed_site)
        _validate(run, self._clock.now())
        return await self._state.store_report(site_id=who.site_id, run=run, now=self._clock.now())

    async def watch(
        self, who: AgentIdentity, *, running_revision: int, claimed_site: str = ""
    ) -> AsyncIterator[Directive]:
        """The directives for one agent's stream, until the caller stops reading."""
        _own_site(who, claimed_site)
        sub = self._hub.subscribe(who.site_id, who.site, who.group, running_revision)
        try:
            async for directive in self._hub.directives(sub):
                yield directive
        finally:
            self._hub.unsubscribe(sub)

    async def ack_config(
        self,
        who: AgentIdentity,
        *,
        revision: int,
        applied: bool,
        error: str,
        claimed_site: str = "",
    ) -> None:
        _own_site(who, claimed_site)
        if revision < 0:
            raise InvalidArgument("a configuration revision cannot be negative")
        await self._config.record_ack(
            site_id=who.site_id, revision=revision, applied=applied, error=error
        )

    async def ack_command(
        self,
        who: AgentIdentity,
        *,
        command_id: str,
        outcome: str,
        message: str,
        claimed_site: str = "",
    ) -> None:
        _own_site(who, claimed_site)
        if outcome not in COMMAND_OUTCOMES:
            raise InvalidArgument(f"a command outcome must be one of {', '.join(COMMAND_OUTCOMES)}")
        await self._config.finish_command(
            site_id=who.site_id,
            command_id=command_id[:64],
            outcome=outcome,
            message=message,
            now=self._clock.now(),
        )


def _own_site(who: AgentIdentity, claimed: str) -> None:
    if claimed and claimed != who.site:
        raise PermissionDenied(
            f"this agent is enrolled for site {who.site!r} and may not act for {claimed!r}"
        )


def _validate(run: RunRecord, now: dt.datetime) -> None:
    if not run.id or len(run.id) > 64 or not run.id.replace("-", "").isalnum():
        raise InvalidArgument("a run report needs an id of 1-64 letters, digits and '-'")
    if run.kind not in KINDS:
        raise InvalidArgument(f"run kind {run.kind!r} is not one of {', '.join(KINDS)}")
    if run.outcome not in OUTCOMES:
        raise InvalidArgument("a run report needs an outcome (succeeded or failed)")
    if run.finished_at < run.started_at:
        raise InvalidArgument("a run cannot finish before it started")
    if run.finished_at > now + _MAX_FUTURE:
        raise InvalidArgument("a run report is dated more than a day in the future")
