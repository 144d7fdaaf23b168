"""The unattended agent loop behind `storesafe-agent run`.

Three kinds of task share one event loop until `stop` is set:

- check-in: at once, then every interval the server names (or the override);
  while the server is unreachable, again after a jittered exponential backoff.
  A refused credential (revoked, unknown) is logged once, with what to do,
  and retried slowly; the agent never exits on its own.
- delivery: drains the outbox oldest first after each successful check-in and
  whenever a job submits a report; a report leaves the outbox only once the
  server acknowledged it. Reports the server refuses for good are set aside.
- jobs: the seam for scheduled work. A job is an async callable that gets a
  `ReportSink` and submits finished `RunReport`s; it runs until cancelled,
  and a crashing job is logged without taking the loop down.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from agent.backoff import Backoff
from agent.domain.messages import CheckIn, CheckInReply
from agent.domain.reports import RunReport
from agent.facts import HostFacts
from agent.outbox import Outbox
from agent.status import CheckInStatus, StatusFile
from agent.timer import Timer
from common.errors import (
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    StoreSafeError,
    Unauthenticated,
)

log = logging.getLogger(__name__)

CREDENTIAL_POLL_SECONDS = 2.0


class Link(Protocol):
    """What the loop needs from the server connection (agent.transport.ServerLink)."""

    async def check_in(self, checkin: CheckIn) -> CheckInReply: ...

    async def report_run(self, report: RunReport) -> bool: ...

    async def close(self) -> None: ...


class ReportSink(Protocol):
    """Where jobs put finished runs; call from the event loop's thread."""

    def submit(self, report: RunReport) -> None: ...


Job = Callable[[ReportSink], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class RunnerConfig:
    """Pacing of the loop; the defaults are for production."""

    interval_override: float | None = None
    default_interval: float = 60.0
    retry_base: float = 1.0
    retry_cap: float = 60.0
    refused_retry: float = 300.0
    stop_grace: float = 5.0


async def sleep_until_changed(timer: Timer, delay: float, stamp: Callable[[], object]) -> bool:
    """Sleep up to `delay` seconds; return True early when `stamp()` changes (a re-enrollment)."""
    before = stamp()
    left = delay
    while left > 0:
        step = min(left, CREDENTIAL_POLL_SECONDS)
        await timer.sleep(step)
        left -= step
        if stamp() != before:
            return True
    return False


class Runner:
    """Checks in, delivers the outbox and hosts jobs until told to stop."""

    def __init__(
        self,
        *,
        connect: Callable[[], Link],
        outbox: Outbox,
        status: StatusFile,
        facts: Callable[[], HostFacts],
        clock: Timer,
        server: str,
        site: str,
        config: RunnerConfig | None = None,
        backoff: Backoff | None = None,
        config_revision: Callable[[], int] = lambda: 0,
        checkin_facts: Callable[[CheckIn], CheckIn] = lambda checkin: checkin,
        credential_stamp: Callable[[], object] = lambda: None,
        jobs: Sequence[Job] = (),
        reenroll: str = "",
    ) -> None:
        """`reenroll` is the command that enrolls this agent again (with NEW_TOKEN in it),
        printed when the server refuses the credential."""
        self._connect = connect
        self._outbox = outbox
        self._status_file = status
        self._facts = facts
        self._clock = clock
        self._server = server
        self._site = site
        self._config = config or RunnerConfig()
        self._backoff = backoff or Backoff(base=self._config.retry_base, cap=self._config.retry_cap)
        self._config_revision = config_revision
        self._checkin_facts = checkin_facts
        self._credential_stamp = credential_stamp
        self._jobs = tuple(jobs)
        self._reenroll = reenroll or (
            f"storesafe-agent enroll --server {server} --token NEW_TOKEN --site {site}"
        )
        self._link: Link | None = None
        self._wake = asyncio.Event()
        self._status = status.load()
        self._unreachable = False
        self._refused = False
        self._stopping = False

    # -- the seam for jobs ---------------------------------------------------

    def submit(self, report: RunReport) -> None:
        """Store `report` in the outbox (durably, before returning) and wake delivery."""
        self._outbox.put(report)
        log.info("queued %s report %s (%s)", report.kind.value, report.id, report.outcome.value)
        self._wake.set()

    # -- the loop ------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; queued reports stay queued for the next start.

        A delivery in flight gets `stop_grace` seconds to finish; everything
        else is cancelled at once.
        """
        log.info(
            "agent running for site %s against %s (%d report(s) queued)",
            self._site,
            self._server,
            self._outbox.pending(),
        )
        try:
            async with asyncio.TaskGroup() as tg:
                delivery = tg.create_task(self._delivery_loop(), name="delivery")
                others = [
                    tg.create_task(self._checkin_loop(), name="check-in"),
                    *(tg.create_task(self._run_job(job)) for job in self._jobs),
                ]
                await stop.wait()
                log.info("stopping")
                for task in others:
                    task.cancel()
                # Let a report in flight get its acknowledgement, briefly, to spare a replay.
                self._stopping = True
                self._wake.set()
                grace = tg.create_task(self._clock.sleep(self._config.stop_grace))
                await asyncio.wait({delivery, grace}, return_when=asyncio.FIRST_COMPLETED)
                delivery.cancel()
                grace.cancel()
        finally:
            await self._drop_link()
        log.info("stopped (%d report(s) queued)", self._outbox.pending())

    async def _checkin_loop(self) -> None:
        while True:
            delay = await self.check_in_once()
            if self._refused:
                await self._wait_for_new_credential(delay)
            else:
                await self._clock.sleep(delay)

    async def _wait_for_new_credential(self, delay: float) -> None:
        if await sleep_until_changed(self._clock, delay, self._credential_stamp):
            log.info("the credential file changed; checking in with the new credential")

    async def _delivery_loop(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.drain()
            except Exception:
                log.exception("delivery failed unexpectedly; retrying after the next check-in")

    async def _run_job(self, job: Job) -> None:
        try:
            await job(self)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s crashed; the agent keeps running", getattr(job, "__name__", job))

    # -- one check-in ----------------------------------------------------------

    async def check_in_once(self) -> float:
        """Check in once; return the seconds to wait before the next check-in."""
        now = self._clock.now()
        try:
            reply = await self._get_link().check_in(self._checkin())
        except (Unauthenticated, PermissionDenied) as exc:
            self._record(last_attempt_at=now, last_result=exc.code, last_error=str(exc))
            await self._on_refused(exc)
            return self._config.refused_retry
        except StoreSafeError as exc:
            self._record(last_attempt_at=now, last_result=exc.code, last_error=str(exc))
            return self._on_unreachable(exc)
        except Exception as exc:
            log.exception("check-in failed unexpectedly")
            self._record(last_attempt_at=now, last_result="internal", last_error=str(exc))
            return self._backoff.next_delay()
        return self._on_checked_in(now, reply)

    def _checkin(self) -> CheckIn:
        facts = self._facts()
        return self._checkin_facts(
            CheckIn(
                agent_version=facts.agent_version,
                hostname=facts.hostname,
                os=facts.os,
                agent_time=facts.agent_time,
                config_revision=self._config_revision(),
                disks=facts.disks,
                outbox_pending=self._outbox.pending(),
            )
        )

    def _on_checked_in(self, now: dt.datetime, reply: CheckInReply) -> float:
        if self._unreachable or self._refused:
            log.info("checked in with %s again", self._server)
        else:
            log.debug("checked in with %s", self._server)
        self._unreachable = self._refused = False
        self._backoff.reset()
        interval = self._interval(reply)
        self._record(
            last_attempt_at=now,
            last_checkin_at=now,
            last_result="ok",
            last_error="",
            server_time=reply.server_time,
            checkin_interval_seconds=interval,
            config_revision=self._config_revision(),
            desired_config_revision=reply.desired_config_revision,
        )
        self._wake.set()
        return interval

    def _interval(self, reply: CheckInReply) -> float:
        if self._config.interval_override is not None:
            return self._config.interval_override
        if reply.checkin_interval_seconds > 0:
            return float(min(max(reply.checkin_interval_seconds, 1), 86_400))
        return self._config.default_interval

    def _on_unreachable(self, exc: StoreSafeError) -> float:
        delay = self._backoff.next_delay()
        if not self._unreachable:
            log.warning(
                "check-in failed: %s; reports are kept in the outbox until the server takes them",
                exc,
            )
        log.info("next check-in attempt in %.1f s", delay)
        self._unreachable = True
        return delay

    async def _on_refused(self, exc: StoreSafeError) -> None:
        if not self._refused:
            log.error(
                "the server at %s refused this agent's credential (%s); to fix it, make a "
                "token with `storesafe token create --site %s` and re-enroll with `%s`; "
                "retrying every %.0f s meanwhile",
                self._server,
                exc,
                self._site,
                self._reenroll,
                self._config.refused_retry,
            )
        self._refused = True
        # A re-enrollment replaces the credential file: reconnect with it next time.
        await self._drop_link()

    # -- delivery ----------------------------------------------------------------

    async def drain(self) -> int:
        """Deliver queued reports oldest first until empty or a failure; return how many."""
        delivered = 0
        while not self._stopping and (item := self._outbox.oldest()) is not None:
            report = item.report
            try:
                duplicate = await self._get_link().report_run(report)
            except (InvalidArgument, ResourceExhausted) as exc:
                log.error("the server refused report %s for good (%s); set aside", report.id, exc)
                self._outbox.reject(report.id, str(exc))
                continue
            except StoreSafeError as exc:
                self._outbox.record_failure(report.id, str(exc))
                log.info("delivery paused, %d report(s) queued: %s", self._outbox.pending(), exc)
                break
            self._outbox.remove(report.id)
            delivered += 1
            note = " (the server had it already)" if duplicate else ""
            log.info("delivered %s report %s%s", report.kind.value, report.id, note)
        if delivered:
            self._record(last_delivery_at=self._clock.now())
        return delivered

    # -- helpers -------------------------------------------------------------------

    def _get_link(self) -> Link:
        if self._link is None:
            self._link = self._connect()
        return self._link

    async def _drop_link(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            with contextlib.suppress(Exception):
                await link.close()

    def _record(self, **changes: object) -> None:
        self._status = dataclasses.replace(self._status, **changes)  # type: ignore[arg-type]
        self._status_file.save(self._status)

    @property
    def status(self) -> CheckInStatus:
        return self._status
