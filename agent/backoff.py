"""Exponential backoff with full jitter, for reconnecting to the server.

Delay n (counting from 0) is uniform in [0, min(cap, base * factor**n)], the
"full jitter" of the AWS architecture note: thousands of agents that lost the
server at the same moment spread their retries instead of returning in a storm.
"""

from __future__ import annotations

import random
from collections.abc import Callable

_SYSTEM_RANDOM = random.SystemRandom()


class Backoff:
    """Yields growing, jittered delays until `reset` after a success."""

    def __init__(
        self,
        *,
        base: float = 1.0,
        cap: float = 60.0,
        factor: float = 2.0,
        rand: Callable[[], float] = _SYSTEM_RANDOM.random,
    ) -> None:
        if base <= 0 or cap < base or factor < 1:
            raise ValueError("backoff needs 0 < base <= cap and factor >= 1")
        self.base = base
        self.cap = cap
        self.factor = factor
        self._rand = rand
        self._failures = 0

    @property
    def failures(self) -> int:
        """Failures since the last reset."""
        return self._failures

    def ceiling(self) -> float:
        """The largest delay the next call may return."""
        # Stop growing the exponent once past the cap, so it never overflows.
        exponent = min(self._failures, 64)
        return float(min(self.cap, self.base * self.factor**exponent))

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt; each call counts one failure."""
        delay = self.ceiling() * self._rand()
        self._failures += 1
        return delay

    def reset(self) -> None:
        """Start over after a success."""
        self._failures = 0
