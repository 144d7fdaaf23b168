"""The off-site store's health as a named gRPC health service, probed every so often:
`storesafe-server health` reads it beside the server's own status."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from grpc_health.v1 import health_pb2

log = logging.getLogger(__name__)

STORE_SERVICE = "storesafe.v1.OffsiteStore"
PROBE_EVERY = 30.0
PROBE_TIMEOUT = 10.0


async def probe_once(health: Any, probe: Callable[[], Awaitable[None]]) -> bool:
    """Run the store probe once and publish SERVING or NOT_SERVING; whether it served."""
    try:
        await asyncio.wait_for(probe(), PROBE_TIMEOUT)
        ok = True
    except Exception as exc:  # noqa: BLE001 - any failure means the store is not usable
        log.warning("the off-site store cannot be used now: %s", exc)
        ok = False
    status = (
        health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    await health.set(STORE_SERVICE, status)
    return ok


async def watch_store(
    health: Any, probe: Callable[[], Awaitable[None]], *, every: float = PROBE_EVERY
) -> None:
    """Probe the store every `every` seconds until cancelled (a state change is logged)."""
    last = True
    while True:
        await asyncio.sleep(every)
        ok = await probe_once(health, probe)
        if ok and not last:
            log.info("the off-site store can be used again")
        last = ok
