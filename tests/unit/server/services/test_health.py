"""HealthCheck: every probe answers, or the report names the one that did not."""

from __future__ import annotations

import asyncio

from server.services.health import HealthCheck


async def fine() -> None:
    return None


async def broken() -> None:
    raise ConnectionError("refused")


async def hanging() -> None:
    await asyncio.Event().wait()


def test_all_probes_answer() -> None:
    report = asyncio.run(HealthCheck({"grpc": fine, "database": fine}).run())
    assert report.healthy and report.checks == {"grpc": "ok", "database": "ok"}


def test_a_failing_and_a_hanging_probe_are_named() -> None:
    check = HealthCheck({"grpc": hanging, "database": broken, "x": fine}, timeout=0.05)
    report = asyncio.run(check.run())
    assert not report.healthy
    assert report.checks == {
        "grpc": "no answer within 0.05 s",
        "database": "failed: ConnectionError",
        "x": "ok",
    }
