"""POSTing JSON to a webhook with aiohttp: bounded time, errors without the secret URL."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp

from server.alerting.channels.base import DeliveryError, host_of

TIMEOUT_SECONDS = 10.0
RETRYABLE_4XX = (408, 425, 429)


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    payload: Any,
    *,
    seconds: float = TIMEOUT_SECONDS,
) -> None:
    """POST `payload`; return on 2xx, else raise DeliveryError naming the host only."""
    host = host_of(url)
    try:
        async with session.post(
            url, json=payload, timeout=aiohttp.ClientTimeout(total=seconds)
        ) as resp:
            if 200 <= resp.status < 300:
                return
            body = (await resp.content.read(200)).decode("utf-8", "replace").strip()
            permanent = 400 <= resp.status < 500 and resp.status not in RETRYABLE_4XX
            detail = f": {' '.join(body.split())[:120]}" if body else ""
            raise DeliveryError(f"{host} answered HTTP {resp.status}{detail}", permanent=permanent)
    except TimeoutError:
        raise DeliveryError(f"{host} did not answer within {seconds:g} s") from None
    except aiohttp.ClientConnectorError as exc:
        errno = exc.os_error.errno if exc.os_error else None
        why = os.strerror(errno) if errno else "no connection"
        raise DeliveryError(f"cannot connect to {host}: {why}") from None
    except (aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
        raise DeliveryError(f"{host}: {type(exc).__name__}") from None
