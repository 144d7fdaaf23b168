"""Log lines about what clients send, at most one per kind per interval."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitedLog:
    """At most one WARNING per `kind` every `every` seconds; the next line that is
    written says how many were held back since the last one. Lines carry no
    traceback: a client that sends garbage on purpose must not be able to fill the
    log at the rate it can send. `clock` is a monotonic clock (tests replace it)."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._every = every
        self._clock = clock
        self._last: dict[str, tuple[float, int]] = {}

    def warning(self, kind: str, message: str) -> bool:
        """Log `message` (one line) unless a line of `kind` was written less than
        `every` seconds ago; True when it was written."""
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last[0] < self._every:
            self._last[kind] = (last[0], last[1] + 1)
            return False
        self._last[kind] = (now, 0)
        if last is not None and last[1]:
            message = f"{message} ({last[1]} more like it in the last {now - last[0]:.0f} s)"
        self._log.warning("%s", message)
        return True
