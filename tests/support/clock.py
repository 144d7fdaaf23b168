"""Test clocks: FakeClock (moves only when told) and a virtual clock for the agent's loops.

Like a real machine it keeps two times: the wall clock (`now()`, moved only by
`advance`/`set`, as FakeClock) and the time sleeps wait on (`elapsed`, in
seconds). `sleep` parks the caller until `elapsed` reaches its deadline;
nothing waits in real time. `run_until(cond)` lets every ready task run, then
jumps to the earliest parked deadline, until `cond()` holds; `run_for(s)`
moves `elapsed` by `s` seconds the same way. A real-time guard only turns a
hung test into a failure; it never decides a pass.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
from collections.abc import Callable

SETTLE_ROUNDS = 20  # event-loop turns given to ready tasks before time moves
GUARD_SECONDS = 30.0


class FakeClock:
    """A clock that moves only when told to (for tests)."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = start or dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)

    def now(self) -> dt.datetime:
        return self._now

    def advance(self, delta: dt.timedelta) -> None:
        self._now += delta

    def set(self, when: dt.datetime) -> None:
        self._now = when


class VirtualClock(FakeClock):
    """A FakeClock whose sleeps end when the test moves time past them, never in real time."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.elapsed = 0.0
        self._parked: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._parked, (self.elapsed + seconds, next(self._order), wake))
        await wake

    def parked(self) -> int:
        """How many sleepers wait for time to move."""
        self._drop_cancelled()
        return len(self._parked)

    def _drop_cancelled(self) -> None:
        while self._parked and self._parked[0][2].done():
            heapq.heappop(self._parked)

    def _move_to(self, when: float) -> None:
        self.elapsed = max(self.elapsed, when)
        while self._parked and self._parked[0][0] <= self.elapsed:
            _, _, wake = heapq.heappop(self._parked)
            if not wake.done():
                wake.set_result(None)

    @staticmethod
    async def settle() -> None:
        """Give every ready task its turns before time moves."""
        for _ in range(SETTLE_ROUNDS):
            await asyncio.sleep(0)

    async def run_until(self, cond: Callable[[], bool]) -> None:
        """Move time from one parked deadline to the next until `cond()` holds."""
        async with asyncio.timeout(GUARD_SECONDS):
            while True:
                await self.settle()
                if cond():
                    return
                self._drop_cancelled()
                if self._parked:
                    self._move_to(self._parked[0][0])
                else:
                    await asyncio.sleep(0.001)  # a task works outside virtual time (a thread)

    async def run_for(self, seconds: float) -> None:
        """Move time forward by `seconds`, waking each sleeper at its own deadline."""
        end = self.elapsed + seconds
        async with asyncio.timeout(GUARD_SECONDS):
            while True:
                await self.settle()
                self._drop_cancelled()
                if not self._parked or self._parked[0][0] > end:
                    self._move_to(end)
                    await self.settle()
                    return
                self._move_to(self._parked[0][0])


class SteppedTime:
    """Monotonic seconds for thread code that takes `clock` and `sleep` callables.

    The test moves `now` by hand; `sleep` records the pause and moves `now` by it.
    """

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
