"""The agent loop checks in, delivers the outbox, rides out outages and refusals, and stops."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from agent.backoff import Backoff
from agent.domain.reports import FirebirdHealth
from agent.outbox import Outbox
from agent.runner import ReportSink, Runner, RunnerConfig
from agent.status import StatusFile
from common.errors import InvalidArgument, Unauthenticated
from tests.support.agentfakes import DOWN, T0, FakeLink, host_facts, report
from tests.support.clock import VirtualClock

FAST = RunnerConfig(interval_override=0.02, retry_base=0.01, retry_cap=0.02, refused_retry=0.05)


class Harness:
    def __init__(
        self, tmp_path: Path, config: RunnerConfig = FAST, jobs: tuple = (), **seams: Any
    ) -> None:
        self.clock = VirtualClock(T0)
        self.link = FakeLink(clock=self.clock)
        self.links_made = 0
        self.outbox = Outbox(tmp_path / "outbox.sqlite")
        self.status = StatusFile(tmp_path / "status.json")
        self.runner = Runner(
            connect=self._connect,
            outbox=self.outbox,
            status=self.status,
            facts=host_facts,
            clock=self.clock,
            server="test:1",
            site="shop-1",
            config=config,
            backoff=Backoff(base=config.retry_base, cap=config.retry_cap, rand=lambda: 1.0),
            jobs=jobs,
            **seams,
        )

    def _connect(self) -> FakeLink:
        self.links_made += 1
        return self.link

    async def until(self, cond: Callable[[], bool]) -> None:
        """Move the virtual clock until `cond` holds (state lives in SQLite and the fake)."""
        await self.clock.run_until(cond)

    async def run(self, body: Callable[[Harness], Awaitable[None]]) -> None:
        """Run the loop around `body`, then stop it, moving virtual time until it has ended."""
        stop = asyncio.Event()
        task = asyncio.create_task(self.runner.run(stop))
        try:
            await body(self)
        finally:
            stop.set()
            await self.clock.run_until(task.done)
            await task


def scenario(tmp_path: Path, body: Callable[[Harness], Awaitable[None]], **kw: object) -> Harness:
    h = Harness(tmp_path, **kw)  # type: ignore[arg-type]
    asyncio.run(h.run(body))
    return h


def test_checks_in_repeatedly_and_records_it(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        await h.until(lambda: len(h.link.checkins) >= 3)

    h = scenario(tmp_path, body)
    assert h.link.checkins[0].hostname == "pc1"
    saved = h.status.load()
    assert saved.last_result == "ok"
    assert saved.last_checkin_at == T0
    assert saved.checkin_interval_seconds == 0.02


def test_queued_reports_are_delivered_oldest_first_after_check_in(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite")
    for n in (1, 2, 3):
        box.put(report(n))
    box.close()

    async def body(h: Harness) -> None:
        await h.until(lambda: h.outbox.pending() == 0)

    h = scenario(tmp_path, body)
    assert h.link.deliveries == ["report-0001", "report-0002", "report-0003"]
    assert h.status.load().last_delivery_at == T0


def test_a_submitted_report_is_stored_then_delivered_without_waiting(tmp_path: Path) -> None:
    slow = RunnerConfig(interval_override=60.0)

    async def body(h: Harness) -> None:
        await h.until(lambda: len(h.link.checkins) == 1)
        h.runner.submit(report(9))
        await h.until(lambda: h.link.deliveries == ["report-0009"])

    h = scenario(tmp_path, body, config=slow)
    assert h.outbox.pending() == 0
    assert len(h.link.checkins) == 1


def test_while_the_server_is_down_reports_wait_and_arrive_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    async def body(h: Harness) -> None:
        h.link.fault = DOWN
        h.runner.submit(report(1))
        h.runner.submit(report(2))
        await h.clock.run_for(0.2)
        assert h.outbox.pending() == 2
        assert h.status.load().last_result == "unavailable"
        h.link.fault = None
        await h.until(lambda: h.outbox.pending() == 0)

    h = scenario(tmp_path, body)
    assert h.link.deliveries == ["report-0001", "report-0002"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, "one warning per outage, not per retry"
    assert "checked in with test:1 again" in caplog.text


def test_a_refused_credential_is_logged_once_with_what_to_do(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(h: Harness) -> None:
        h.link.fault = Unauthenticated("unknown or revoked agent credential")
        await h.clock.run_for(0.4)
        h.link.fault = None
        await h.until(lambda: len(h.link.checkins) >= 1)

    h = scenario(tmp_path, body)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "re-enroll" in errors[0]
    assert "storesafe-agent enroll --server test:1" in errors[0]
    assert h.links_made >= 2, "reconnects with a freshly read credential"


def test_a_report_refused_for_good_is_set_aside_and_the_rest_flow(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        h.link.reject["report-0001"] = InvalidArgument("report has no kind")
        h.runner.submit(report(1))
        h.runner.submit(report(2))
        await h.until(lambda: h.link.deliveries == ["report-0002"])

    h = scenario(tmp_path, body)
    assert (h.outbox.pending(), h.outbox.rejected()) == (0, 1)


def test_a_replay_is_acknowledged_and_removed(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        h.link.stored["report-0001"] = report(1)
        h.runner.submit(report(1))
        await h.until(lambda: h.outbox.pending() == 0)

    h = scenario(tmp_path, body)
    assert h.link.deliveries == ["report-0001"]


def test_jobs_submit_through_the_seam_and_a_crash_is_contained(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def good(sink: ReportSink) -> None:
        sink.submit(report(5))
        await asyncio.Event().wait()

    async def bad(sink: ReportSink) -> None:
        raise RuntimeError("boom")

    async def body(h: Harness) -> None:
        await h.until(lambda: h.link.deliveries == ["report-0005"])
        await h.until(lambda: len(h.link.checkins) >= 3)

    scenario(tmp_path, body, jobs=(good, bad))
    assert "job bad crashed" in caplog.text


def test_stop_leaves_undelivered_reports_queued_and_closes_the_link(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        h.link.fault = DOWN
        h.runner.submit(report(1))
        await h.until(lambda: h.link.in_flight == ["report-0001"])

    h = scenario(tmp_path, body)
    assert h.outbox.pending() == 1
    assert h.link.closed == 1


def test_the_server_names_the_interval_unless_overridden(tmp_path: Path) -> None:
    h = Harness(tmp_path, config=RunnerConfig())
    h.link.interval = 30
    assert asyncio.run(h.runner.check_in_once()) == 30.0
    h.link.interval = 0
    assert asyncio.run(h.runner.check_in_once()) == 60.0
    h.link.fault = DOWN
    assert asyncio.run(h.runner.check_in_once()) == 1.0  # backoff base, full draw
    assert asyncio.run(h.runner.check_in_once()) == 2.0


def test_check_in_carries_the_seams_figures(tmp_path: Path) -> None:
    health = FirebirdHealth(oit=1, oat=2, next_transaction=3)
    h = Harness(
        tmp_path,
        checkin_facts=lambda c: dataclasses.replace(c, firebird=health),
        config_revision=lambda: 7,
    )
    h.outbox.put(report(1))
    asyncio.run(h.runner.check_in_once())
    sent = h.link.checkins[-1]
    assert (sent.firebird, sent.config_revision, sent.outbox_pending) == (health, 7, 1)
    assert h.status.load().config_revision == 7


def test_a_re_enrollment_ends_the_slow_retry_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.runner.CREDENTIAL_POLL_SECONDS", 0.01)
    stamp = ["old"]
    slow = RunnerConfig(interval_override=60.0, refused_retry=60.0)

    async def body(h: Harness) -> None:
        await h.until(lambda: h.status.load().last_result == "unauthenticated")
        h.link.fault = None
        stamp[0] = "new"  # `storesafe-agent enroll` replaced the credential file
        await h.until(lambda: len(h.link.checkins) == 1)

    h = Harness(tmp_path, config=slow, credential_stamp=lambda: stamp[0])
    h.link.fault = Unauthenticated("revoked")
    asyncio.run(h.run(body))
    assert h.status.load().last_result == "ok"


def test_stop_lets_the_delivery_in_flight_finish(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        h.link.report_delay = 0.3
        h.runner.submit(report(1))
        h.runner.submit(report(2))
        await h.until(lambda: h.link.in_flight == ["report-0001"])

    h = scenario(tmp_path, body)
    assert h.link.deliveries == ["report-0001"], "acknowledged, not cut off"
    assert [p.report.id for p in h.outbox.peek(10)] == ["report-0002"], "the rest waits"


def test_stop_does_not_wait_for_a_hung_server_forever(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        h.link.report_delay = 60
        h.runner.submit(report(1))
        await h.until(lambda: h.link.in_flight == ["report-0001"])

    grace = RunnerConfig(interval_override=0.02, stop_grace=0.1)
    h = scenario(tmp_path, body, config=grace)
    assert h.outbox.pending() == 1
