"""What agents do once enrolled: check in and deliver run reports."""

from __future__ import annotations

import dataclasses
import datetime as dt

from common.clock import Clock
from common.errors import InvalidArgument, PermissionDenied
from server.domain import AgentIdentity, CheckInFacts, RunRecord
from server.state.base import FleetState

KINDS = ("backup", "image-sync", "upload", "validation")
OUTCOMES = ("succeeded", "failed")
_MAX_FUTURE = dt.timedelta(days=1)


@dataclasses.dataclass(frozen=True)
class CheckInReply:
    server_time: dt.datetime
    desired_config_revision: int
    checkin_interval_seconds: int


class AgentTraffic:
    def __init__(self, state: FleetState, clock: Clock, *, checkin_interval: int = 60) -> None:
        self._state = state
        self._clock = clock
        self._interval = checkin_interval

    async def check_in(
        self, who: AgentIdentity, facts: CheckInFacts, *, claimed_site: str = ""
    ) -> CheckInReply:
        _own_site(who, claimed_site)
        now = self._clock.now()
        await self._state.record_checkin(site_id=who.site_id, facts=facts, now=now)
        return CheckInReply(now, 0, self._interval)

    async def report(self, who: AgentIdentity, run: RunRecord, *, claimed_site: str = "") -> bool:
        """Store a run; True when it was a replay of one already stored."""
        _own_site(who, claimed_site)
        _validate(run, self._clock.now())
        return await self._state.store_report(site_id=who.site_id, run=run, now=self._clock.now())


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
