"""The upload token bucket, driven by an injected clock (nothing waits in real time)."""

from __future__ import annotations

import datetime as dt

from agent.offsite.bandwidth import TokenBucket
from tests.support.clock import FakeClock


def bucket(kbps: int) -> tuple[TokenBucket, FakeClock, list[float]]:
    clock = FakeClock(dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(dt.timedelta(seconds=seconds))

    return TokenBucket.kbps(kbps, clock=clock, sleep=sleep), clock, slept


def test_sending_holds_the_average_rate() -> None:
    b, clock, slept = bucket(80)  # 10,000 bytes a second, one second of burst
    start = clock.now()
    for _ in range(10):
        b.take(5_000)
    # 50,000 bytes: the first 10,000 go at once, the other 40,000 take 4 s
    assert (clock.now() - start).total_seconds() == 4.0
    assert sum(slept) == 4.0


def test_idle_time_refills_at_most_one_burst() -> None:
    b, clock, slept = bucket(80)
    b.take(10_000)
    clock.advance(dt.timedelta(hours=1))
    b.take(10_000)
    assert slept == []
    b.take(20_000)
    assert sum(slept) == 2.0


def test_zero_is_unlimited() -> None:
    b, _, slept = bucket(0)
    b.take(10**12)
    assert slept == []
