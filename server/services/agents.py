"""What agents do once enrolled: check in, deliver run reports, acknowledge directives.

The one ingest seam: the rpc edge converts a message (server/rpc/convert/agent.py),
server/domain/ingest.py judges it (one function per message), the state stores it.
For check-ins and reports the first two run in the writer, wrapped in Deferreds
(server/deferred.py), so that decoding and validation cost the event loop nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from common.clock import Clock
from common.errors import PermissionDenied, quote
from server.deferred import Deferred, resolve
from server.domain import ingest, rules
from server.domain.records import AgentIdentity, CheckInFacts, RunRecord
from server.services.push import ConfigHub, Directive
from server.state.base import FleetState
from server.state.config_base import ConfigState


@dataclasses.dataclass(frozen=True)
class CheckInReply:
    server_time: dt.datetime
    desired_config_revision: int
    checkin_interval_seconds: int


@dataclasses.dataclass(frozen=True)
class ConfigAck:
    """An agent applied a configuration revision (or refused it, and why)."""

    revision: int
    applied: bool
    error: str = ""
    site: str = ""


@dataclasses.dataclass(frozen=True)
class CommandAck:
    """An agent ran a remote command (or declined it)."""

    command_id: str
    outcome: str
    message: str = ""
    site: str = ""


AgentEvent = ConfigAck | CommandAck


class AgentTraffic:
    def __init__(
        self,
        state: FleetState,
        config: ConfigState,
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
        self,
        who: AgentIdentity,
        facts: ingest.CheckInInput | Deferred[ingest.CheckInInput],
        *,
        claimed_site: str = "",
    ) -> CheckInReply:
        """Record a check-in; its facts are decoded and judged by the writer (see
        server/deferred.py), and their errors come back from there."""
        _own_site(who, claimed_site)
        now = self._clock.now()
        checked = Deferred(valid_checkin, facts)
        await self._state.record_checkin(site_id=who.site_id, facts=checked, now=now)
        desired = self._hub.snapshot.desired_revision(who.site, who.group)
        return CheckInReply(now, desired, self._interval)

    async def report(
        self,
        who: AgentIdentity,
        run: ingest.RunInput | Deferred[ingest.RunInput],
        *,
        claimed_site: str = "",
    ) -> bool:
        """Store a run; True when it was a replay of one already stored. The run is
        decoded and validated by the writer (see server/deferred.py); its errors come
        back from there."""
        _own_site(who, claimed_site)
        now = self._clock.now()
        checked = Deferred(valid_run, run, now)
        return await self._state.store_report(site_id=who.site_id, run=checked, now=now)

    async def watch(
        self,
        who: AgentIdentity,
        *,
        running_revision: int,
        claimed_site: str = "",
        recheck: Callable[[], Awaitable[object]] | None = None,
    ) -> AsyncGenerator[Directive, None]:
        """The directives for one agent's stream, until the caller stops reading.

        `recheck` authenticates the caller again once the stream is subscribed: a
        revocation that arrived since the call was authenticated then refuses it,
        and one that arrives later ends it (the hub cuts the subscription off).
        """
        _own_site(who, claimed_site)
        rules.revision("running_revision", running_revision)
        sub = self._hub.subscribe(who.site_id, who.site, who.group, running_revision, who.agent_id)
        try:
            if recheck is not None:
                await recheck()
            async for directive in self._hub.directives(sub):
                yield directive
        finally:
            self._hub.unsubscribe(sub)

    async def session(
        self,
        who: AgentIdentity,
        *,
        running_revision: int,
        events: AsyncIterator[AgentEvent],
        claimed_site: str = "",
        recheck: Callable[[], Awaitable[object]] | None = None,
    ) -> AsyncIterator[Directive]:
        """`watch`, while the acks the agent sends on the same stream are recorded as
        they arrive. A bad ack ends the stream with its error; the agent closing its
        side ends nothing (it may still listen)."""
        _own_site(who, claimed_site)
        rules.revision("open.running_revision", running_revision)
        acks = asyncio.ensure_future(self._record(who, events))
        try:
            async for directive in _until_failed(
                self.watch(who, running_revision=running_revision, recheck=recheck), acks
            ):
                yield directive
        finally:
            acks.cancel()

    async def _record(self, who: AgentIdentity, events: AsyncIterator[AgentEvent]) -> None:
        async for event in events:
            if isinstance(event, ConfigAck):
                await self.ack_config(
                    who,
                    revision=event.revision,
                    applied=event.applied,
                    error=event.error,
                    claimed_site=event.site,
                )
            else:
                await self.ack_command(
                    who,
                    command_id=event.command_id,
                    outcome=event.outcome,
                    message=event.message,
                    claimed_site=event.site,
                )

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
        rules.revision("revision", revision)
        error = ingest.config_ack_error(error)
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
        command_id, outcome, message = ingest.command_ack(command_id, outcome, message)
        await self._config.finish_command(
            site_id=who.site_id,
            command_id=command_id,
            outcome=outcome,
            message=message,
            now=self._clock.now(),
        )


async def _until_failed(
    source: AsyncGenerator[Directive, None], task: asyncio.Future[None]
) -> AsyncIterator[Directive]:
    """Yield from `source` until it ends, or until `task` fails (then raise its error).
    On the way out `source` is always closed (its subscription released)."""
    step: asyncio.Future[Directive] | None = None
    try:
        while True:
            _raise_if_failed(task)  # it may have failed while the last item was being sent
            step = asyncio.ensure_future(anext(source))
            if not task.done():
                both: set[asyncio.Future[Any]] = {step, task}
                await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
                _raise_if_failed(task)
            try:
                item = await step
            except StopAsyncIteration:
                return
            yield item
    finally:
        if step is not None:
            if not step.done():
                step.cancel()
            with contextlib.suppress(BaseException):
                await step  # also marks an end or error it finished with as seen
        await source.aclose()


def _raise_if_failed(task: asyncio.Future[None]) -> None:
    failure = task.exception() if task.done() and not task.cancelled() else None
    if failure is not None:
        raise failure


def _own_site(who: AgentIdentity, claimed: str) -> None:
    if claimed and claimed != who.site:
        raise PermissionDenied(
            f"this agent is enrolled for site {who.site!r} and may not act for {quote(claimed)}"
        )


def valid_run(run: ingest.RunInput | Deferred[ingest.RunInput], now: dt.datetime) -> RunRecord:
    """The run, once every field passed ingest's rules (InvalidArgument otherwise)."""
    return ingest.run_record(resolve(run), now)


def valid_checkin(
    checkin: ingest.CheckInInput | Deferred[ingest.CheckInInput],
) -> CheckInFacts:
    """The check-in's facts, once every field passed ingest's rules."""
    return ingest.checkin_facts(resolve(checkin))
