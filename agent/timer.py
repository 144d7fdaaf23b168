"""The agent's loops wait through a clock that can sleep, injected so tests move time, not sleep."""

from __future__ import annotations

import asyncio
from typing import Protocol

from common.clock import Clock, SystemClock


class Timer(Clock, Protocol):
    """A clock that can also be waited on (tests: tests/support/clock.VirtualClock)."""

    async def sleep(self, seconds: float) -> None:
        """Return once `seconds` have passed on this clock."""
        ...


class SystemTimer(SystemClock):
    """The real wall clock, and real sleeps on the event loop."""

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
