"""Human forms of times, sizes and durations."""

from __future__ import annotations

import datetime as dt

import pytest

from cli.humanize import ago, seconds_text, size, timestamp
from tests.support.cli import NOW


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (dt.timedelta(seconds=5), "just now"),
        (dt.timedelta(minutes=5), "5m ago"),
        (dt.timedelta(hours=3, minutes=59), "3h ago"),
        (dt.timedelta(days=2, hours=5), "2d ago"),
        (dt.timedelta(minutes=-7), "in 7m"),
    ],
)
def test_ago(delta: dt.timedelta, text: str) -> None:
    assert ago(NOW - delta, NOW) == text


def test_never_is_a_word_not_a_blank() -> None:
    assert ago(None, NOW) == "never"
    assert timestamp(None, NOW) == "never"


def test_timestamp_shows_utc_and_age() -> None:
    when = dt.datetime(2026, 11, 26, 19, 4, tzinfo=dt.UTC)
    assert timestamp(when, NOW) == "2026-11-26 19:04 UTC (2h ago)"
    local = when.astimezone(dt.timezone(dt.timedelta(hours=2)))
    assert timestamp(local, NOW) == "2026-11-26 19:04 UTC (2h ago)"


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KiB"),
        (3 * 1024**3, "3.0 GiB"),
        (2 * 1024**5, "2048.0 TiB"),
    ],
)
def test_size(count: int, text: str) -> None:
    assert size(count) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.42, "0.4s"), (42, "42s"), (192, "3m12s"), (3900, "1h05m")]
)
def test_seconds_text(seconds: float, text: str) -> None:
    assert seconds_text(seconds) == text
