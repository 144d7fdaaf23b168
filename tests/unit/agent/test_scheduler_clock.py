"""The scheduler when the agent's clock jumps: after sleep, a reboot or a clock correction."""

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


def make(tmp_path: Path, clock: FakeClock) -> tuple[Scheduler, list[tuple[str, str]]]:
    """Daily backup at 21:00 and validation every hour at :30, both configured."""
    store = ConfigStore(tmp_path, path_check=lambda k, v: None)
    store.apply(1, {"backup.schedule": "0 21 * * *", "validate.schedule": "30 * * * *"})
    ran: list[tuple[str, str]] = []

    def task(name: str, key: str) -> Task:
        async def run(trigger: str) -> RunReport:
            ran.append((name, trigger))
            now = clock.now()
            return RunReport(RunKind.BACKUP, now, now, Outcome.SUCCEEDED, trigger=trigger)

        def ok(cfg: AgentConfig) -> str | None:
            return None

        return Task(name, key, ok, run)

    tasks = [task("backup", "backup.schedule"), task("validation", "validate.schedule")]
    return Scheduler(config=store, tasks=tasks, clock=clock, state_dir=tmp_path, tz=UTC), ran


def ticks(s: Scheduler, n: int = 3) -> None:
    """What the scheduler loop does at each wake-up, `n` times at the same moment."""

    async def body() -> None:
        for _ in range(n):
            for name in s.due():
                await s.run(name, trigger=s._trigger(name))

    asyncio.run(body())


def test_a_jump_forward_of_several_days_gives_one_catch_up_per_task(tmp_path: Path) -> None:
    clock = FakeClock(START)
    s, ran = make(tmp_path, clock)
    ticks(s)
    assert ran == []  # first sight
    clock.advance(dt.timedelta(days=5, hours=3))  # the PC slept over five 21:00 slots
    ticks(s)
    assert sorted(ran) == [("backup", "catch-up"), ("validation", "catch-up")]
    ran.clear()
    clock.advance(dt.timedelta(minutes=10))  # 15:10: no new slot of either task
    ticks(s)
    assert ran == []
    clock.set(clock.now().replace(hour=15, minute=30, second=20))
    ticks(s)
    assert ran == [("validation", "schedule")]  # back on the normal rhythm


def test_a_jump_forward_across_a_restart_still_runs_once(tmp_path: Path) -> None:
    clock = FakeClock(START)
    s, _ = make(tmp_path, clock)
    ticks(s)
    clock.advance(dt.timedelta(days=4))  # powered off four days
    s2, ran = make(tmp_path, clock)  # the agent starts again with its marks on disk
    ticks(s2)
    assert sorted(ran) == [("backup", "catch-up"), ("validation", "catch-up")]


def test_a_jump_backward_never_runs_a_slot_twice(tmp_path: Path) -> None:
    clock = FakeClock(START)
    s, ran = make(tmp_path, clock)
    ticks(s)
    clock.set(START.replace(hour=21, minute=0, second=10))
    ticks(s)
    assert ran == [("backup", "schedule"), ("validation", "catch-up")]
    ran.clear()
    # The clock is corrected two days back (e.g. a dead CMOS battery, then NTP).
    clock.set(START - dt.timedelta(days=2))
    ticks(s)
    assert ran == []
    # Time passes through slots that are older than the ones already run: nothing runs.
    for hours in range(1, 50):
        clock.set(START - dt.timedelta(days=2) + dt.timedelta(hours=hours, minutes=31))
        ticks(s, 1)
    assert ran == []
    # Only the first slot after the ones already run counts again.
    clock.set(START.replace(hour=21, minute=30, second=5))
    ticks(s)
    assert ran == [("validation", "schedule")]
    clock.set(START.replace(day=3, hour=21, minute=0, second=5))
    ticks(s)
    assert ran == [("validation", "schedule"), ("backup", "schedule"), ("validation", "catch-up")]


def test_a_small_jump_back_over_a_slot_just_run_does_not_repeat_it(tmp_path: Path) -> None:
    clock = FakeClock(START)
    s, ran = make(tmp_path, clock)
    ticks(s)
    clock.set(START.replace(hour=20, minute=59, second=50))
    ticks(s)
    ran.clear()
    clock.set(START.replace(hour=21, minute=0, second=30))
    ticks(s)
    assert ran == [("backup", "schedule")]
    clock.set(START.replace(hour=20, minute=59, second=58))  # NTP steps back 32 s
    ticks(s)
    clock.set(START.replace(hour=21, minute=0, second=1))  # and 21:00 comes round again
    ticks(s)
    assert ran == [("backup", "schedule")]
