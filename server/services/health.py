"""Whether this server answers: its gRPC endpoint and its database, each probed for real."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[None]]
PROBE_TIMEOUT = 3.0


@dataclasses.dataclass(frozen=True)
class HealthReport:
    checks: dict[str, str]  # name -> "ok" or the reason it failed

    @property
    def healthy(self) -> bool:
        return all(v == "ok" for v in self.checks.values())


class HealthCheck:
    """Runs named probes (each raises when its part does not answer) with a timeout."""

    def __init__(self, probes: dict[str, Probe], *, timeout: float = PROBE_TIMEOUT) -> None:
        self._probes = probes
        self._timeout = timeout

    async def run(self) -> HealthReport:
        names = list(self._probes)
        results = await asyncio.gather(*(self._one(n) for n in names))
        return HealthReport(dict(zip(names, results, strict=True)))

    async def _one(self, name: str) -> str:
        try:
            await asyncio.wait_for(self._probes[name](), self._timeout)
        except TimeoutError:
            return f"no answer within {self._timeout:g} s"
        except Exception as exc:  # noqa: BLE001 - any failure means unhealthy, reported by name
            log.warning("health probe %s failed: %s", name, type(exc).__name__)
            return f"failed: {type(exc).__name__}"
        return "ok"
