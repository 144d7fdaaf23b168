"""A token bucket that holds the upload to `upload.bandwidth_kbps`, by the injected clock."""

from __future__ import annotations

from collections.abc import Callable

from common.clock import Clock


class TokenBucket:
    """Bytes may be sent at `rate` per second on average, in bursts of at most `burst`.

    `take(n)` blocks (through the injected `sleep`) until `n` bytes may go; a rate
    of 0 is unlimited. The bucket may go into debt by one take, so a take larger
    than the burst waits for its whole size instead of never going.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Clock,
        sleep: Callable[[float], None],
        burst: float | None = None,
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else rate
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock.now()
        self.waited = 0.0  # seconds spent waiting, for the report and the tests

    @classmethod
    def kbps(cls, kbps: int, *, clock: Clock, sleep: Callable[[float], None]) -> TokenBucket:
        """A bucket for `upload.bandwidth_kbps` (kbit/s, 0 unlimited), with a one-second burst."""
        return cls(kbps * 1000 / 8, clock=clock, sleep=sleep)

    def take(self, n: int) -> None:
        if self.rate <= 0 or n <= 0:
            return
        self._refill()
        self._tokens -= n
        if self._tokens < 0:
            wait = -self._tokens / self.rate
            self.waited += wait
            self._sleep(wait)
            self._refill()

    def _refill(self) -> None:
        now = self._clock.now()
        elapsed = max(0.0, (now - self._last).total_seconds())
        self._last = now
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
