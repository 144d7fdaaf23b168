"""The scheduler: on-time runs, one catch-up after downtime, one job at a time."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from agent.configsync import AgentConfig, ConfigStore
from agent.domain.reports import Outcome, RunKind, RunReport
from agent.scheduler import Scheduler, Task
from tests.support.clock import FakeClock

UTC = dt.UTC
START = dt.datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday


class Sink:
    def __init__(self) -> None:
        self.reports: list[RunReport] = []

    def submit(self, report: RunReport) -> None:
        self.reports.append(report)


def make(
    tmp_path: Path, clock: FakeClock, *, enabled: bool = True, schedule: str = "0 21 * * *"
) -> tuple[Scheduler, list[str], ConfigStore]:
    store = ConfigStore(tmp_path, path_check=lambda k, v: None)
    store.apply(1, {"backup.schedule": schedule})
    ran: list[str] = []

    async def run(trigger: str) -> RunReport:
        ran.append(trigger)
        now = clock.now()
        return RunReport(RunKind.BACKUP, now, now, Outcome.SUCCEEDED, trigger=trigger)

    def ok(cfg: AgentConfig) -> str | None:
        return None if enabled else "firebird.database is not set"

    task = Task("backup", "backup.schedule", ok, run)
    return (
        Scheduler(config=store, tasks=[task], clock=clock, state_dir=tmp_path, tz=UTC),
        ran,
        store,
    )


async def tick(s: Scheduler, sink: Sink) -> None:
    for name in s.due():
        await s.run(name, trigger=s._trigger(name))


def test_runs_on_time_then_waits_for_the_next_slot(tmp_path: Path) -> None:
    clock = FakeClock(START)
    s, ran, _ = make(tmp_path, clock)
    sink = Sink()
    s._sink = sink

    async def body() -> None:
        await tick(s, sink)
        assert ran == []  # first sight: remembers the last slot, runs nothing
        clock.set(START.replace(hour=21, minute=0, second=30))
        await tick(s, sink)
        assert ran == ["schedule"]
        clock.advance(dt.timedelta(hours=1))
        await tick(s, sink)
        assert ran == ["schedule"]

    asyncio.run(body())
    assert [r.trigger for r in sink.reports] == ["schedule"]
    assert s.seconds_to_next() <= 30


def test_three_missed_slots_give_one_catch_up_run_even_after_restart(tmp_path: Path) -> None:
    clock = FakeClock(START)
    s, _ran, _ = make(tmp_path, clock)
    asyncio.run(tick(s, Sink()))
    clock.advance(dt.timedelta(days=3, hours=1))  # PC off over three 21:00 slots
    s2, ran2, _ = make(tmp_path, clock)  # the agent restarts with its marks on disk

    async def body() -> None:
        await tick(s2, Sink())
        await tick(s2, Sink())

    asyncio.run(body())
    assert ran2 == ["catch-up"]


def test_a_late_single_slot_is_a_catch_up(tmp_path: Path) -> None:
    clock = FakeClock(START)
    s, ran, _ = make(tmp_path, clock)
    asyncio.run(tick(s, Sink()))
    clock.set(START.replace(hour=23))
    asyncio.run(tick(s, Sink()))
    assert ran == ["catch-up"]


def test_changing_the_schedule_does_not_run_by_itself(tmp_path: Path) -> None:
    clock = FakeClock(START)
    s, ran, store = make(tmp_path, clock)
    asyncio.run(tick(s, Sink()))
    store.apply(2, {"backup.schedule": "0 6 * * *"})  # its last slot (06:00) is in the past
    asyncio.run(tick(s, Sink()))
    assert ran == []


def test_disabled_tasks_never_run(tmp_path: Path) -> None:
    clock = FakeClock(START)
    s, ran, _ = make(tmp_path, clock, enabled=False)
    asyncio.run(tick(s, Sink()))
    clock.advance(dt.timedelta(days=2))
    asyncio.run(tick(s, Sink()))
    assert asyncio.run(s.run("backup", trigger="remote")) is None
    assert ran == []


def test_one_job_at_a_time(tmp_path: Path) -> None:
    clock = FakeClock(START)
    store = ConfigStore(tmp_path, path_check=lambda k, v: None)
    running = 0
    peak = 0

    async def slow(trigger: str) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        for _ in range(10):  # the other two ask for the lock meanwhile
            await asyncio.sleep(0)
        running -= 1

    task = Task("backup", "backup.schedule", lambda cfg: None, slow)
    s = Scheduler(config=store, tasks=[task], clock=clock, state_dir=tmp_path, tz=UTC)

    async def body() -> None:
        await asyncio.gather(*(s.run("backup", trigger="remote") for _ in range(3)))

    asyncio.run(body())
    assert peak == 1
