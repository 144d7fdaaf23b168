"""When scheduled jobs run: cron in the PC's local time, one job at a time, a missed run once.

Each task has a cron key in the configuration (`backup.schedule`, ...). The
scheduler remembers, per task, the last slot it ran (in `schedule.json`). At
each tick, a task whose newest slot is later than that runs once: right on
time it is a "schedule" run; after the PC was off or the agent stopped over
one or more slots it is a single "catch-up" run, however many were missed.
A changed schedule starts counting from its own newest slot, so editing it
never triggers a run by itself. Remote and local "run now" requests go
through the same lock: one job at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from croniter import croniter

from agent.configsync import AgentConfig, ConfigStore
from agent.domain.reports import RunReport
from agent.runner import ReportSink
from agent.settings import write_atomic
from agent.timer import Timer

log = logging.getLogger(__name__)

SCHEDULE_FILE = "schedule.json"
ON_TIME = dt.timedelta(minutes=5)
MAX_SLEEP = 30.0


@dataclasses.dataclass(frozen=True)
class Task:
    """A job the scheduler runs: `run(trigger)` returns its report, or None if it did nothing."""

    name: str
    schedule_key: str
    enabled: Callable[[AgentConfig], str | None]  # None when runnable, else why not
    run: Callable[[str], Awaitable[RunReport | None]]


class Scheduler:
    """A runner job (see agent.runner.Job) that starts tasks on their cron schedules."""

    def __init__(
        self,
        *,
        config: ConfigStore,
        tasks: list[Task],
        clock: Timer,
        state_dir: Path,
        tz: dt.tzinfo | None = None,
    ) -> None:
        self._config = config
        self._tasks = {t.name: t for t in tasks}
        self._clock = clock
        self._path = state_dir / SCHEDULE_FILE
        self._tz = tz
        self._lock = asyncio.Lock()
        self._marks = self._load()
        self._sink: ReportSink | None = None

    def local_now(self) -> dt.datetime:
        now = self._clock.now()
        return now.astimezone(self._tz) if self._tz else now.astimezone()

    async def __call__(self, sink: ReportSink) -> None:
        self._sink = sink
        while True:
            for name in self.due():
                await self.run(name, trigger=self._trigger(name))
            await self._clock.sleep(self.seconds_to_next())

    def due(self) -> list[str]:
        """Names of tasks with a slot not yet run (marks are initialised on first sight)."""
        out = []
        now = self.local_now()
        for task in self._tasks.values():
            if self._tasks[task.name].enabled(self._config.current) is not None:
                continue
            expr = self._config.current.text(task.schedule_key)
            slot = _prev(expr, now)
            mark = self._marks.get(task.name)
            if mark is None or mark[0] != expr:
                self._mark(task.name, expr, slot)
                continue
            if slot > mark[1]:
                out.append(task.name)
        return out

    def _trigger(self, name: str) -> str:
        expr = self._config.current.text(self._tasks[name].schedule_key)
        now = self.local_now()
        slot = _prev(expr, now)
        mark = self._marks[name][1]
        missed_more = _next(expr, mark) < slot
        return "catch-up" if missed_more or now - slot > ON_TIME else "schedule"

    def seconds_to_next(self) -> float:
        now = self.local_now()
        waits = [MAX_SLEEP]
        for task in self._tasks.values():
            if task.enabled(self._config.current) is None:
                nxt = _next(self._config.current.text(task.schedule_key), now)
                waits.append(max(0.5, (nxt - now).total_seconds() + 0.5))
        return min(waits)

    async def run(self, name: str, *, trigger: str) -> RunReport | None:
        """Run one task now (waiting for any running one), record the slot, submit the report."""
        task = self._tasks[name]
        async with self._lock:
            why_not = task.enabled(self._config.current)
            if why_not is not None:
                log.info("%s not run: %s", name, why_not)
                return None
            expr = self._config.current.text(task.schedule_key)
            slot = _prev(expr, self.local_now())
            log.info("starting %s (%s)", name, trigger)
            report = await task.run(trigger)
            if trigger in ("schedule", "catch-up") or slot > self._marks.get(name, ("", slot))[1]:
                self._mark(name, expr, slot)
            if report is not None and self._sink is not None:
                self._sink.submit(report)
            return report

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Hold the one-job-at-a-time lock for work that is not a scheduled task."""
        async with self._lock:
            yield

    def _mark(self, name: str, expr: str, slot: dt.datetime) -> None:
        self._marks[name] = (expr, slot)
        data = {k: [e, s.isoformat()] for k, (e, s) in self._marks.items()}
        write_atomic(self._path, json.dumps(data).encode("utf-8"))

    def _load(self) -> dict[str, tuple[str, dt.datetime]]:
        try:
            raw = json.loads(self._path.read_text(encoding="utf-8"))
            return {k: (str(v[0]), dt.datetime.fromisoformat(v[1])) for k, v in raw.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, IndexError, AttributeError):
            log.warning("schedule marks in %s are damaged; starting afresh", self._path)
            return {}


def _prev(expr: str, now: dt.datetime) -> dt.datetime:
    value: dt.datetime = croniter(expr, now).get_prev(dt.datetime)
    return value


def _next(expr: str, after: dt.datetime) -> dt.datetime:
    value: dt.datetime = croniter(expr, after).get_next(dt.datetime)
    return value
