"""server/rpc/ratelog.py: one line per kind per interval, with the count held back."""

from __future__ import annotations

import logging

import pytest

from server.rpc.ratelog import RateLimitedLog


def test_one_line_per_kind_per_interval_says_how_many_were_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    limited = RateLimitedLog(logging.getLogger("t.ratelog"), every=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="t.ratelog"):
        assert limited.warning("a", "bad a") is True
        for _ in range(500):
            assert limited.warning("a", "bad a") is False
        assert limited.warning("b", "bad b") is True  # another kind has its own allowance
        now[0] += 59.0
        assert limited.warning("a", "bad a") is False
        now[0] += 1.0
        assert limited.warning("a", "bad a") is True
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["bad a", "bad b", "bad a (501 more like it in the last 60 s)"]
    assert all(r.exc_info is None for r in caplog.records)
