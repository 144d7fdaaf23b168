"""ShopActivity against the real server: busy while the shop commits, idle otherwise."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from agent.firebird.activity import ShopActivity
from common.firebird.connection import FirebirdTarget
from tests.support.shopsim import ShopWriter

pytestmark = pytest.mark.firebird


def _within(seconds: float, cond: Callable[[], bool]) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


def test_busy_while_the_shop_writes_and_idle_when_it_stops(shop: FirebirdTarget) -> None:
    with ShopActivity(shop, sample_seconds=0.05) as activity:
        assert not activity.busy()  # until the first sample: full speed
        time.sleep(0.2)
        assert not activity.busy()  # nobody writes
        writer = ShopWriter(shop).start()
        try:
            assert _within(5, activity.busy)
        finally:
            stats = writer.stop()
        assert stats.transfers > 0
        assert _within(5, lambda: not activity.busy())


def test_a_database_it_cannot_reach_counts_as_idle(shop: FirebirdTarget) -> None:
    gone = FirebirdTarget(shop.host, "/nonexistent/shop.fdb", shop.user, shop.password)
    with ShopActivity(gone, sample_seconds=0.05) as activity:
        assert _within(5, lambda: not activity.busy())
