"""Time, read through a clock that tests replace, and written for people and for JSON."""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class Clock(Protocol):
    """Something that tells the current time in UTC."""

    def now(self) -> dt.datetime:
        """Return the current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


def utc(when: dt.datetime) -> dt.datetime:
    """Return `when` as an aware UTC datetime (naive values are taken as UTC)."""
    if when.tzinfo is None:
        return when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC)


def human_time(when: dt.datetime) -> str:
    """The one time format of human output: `2026-11-26 19:04 UTC` (JSON uses `iso`)."""
    return f"{utc(when):%Y-%m-%d %H:%M} UTC"


def iso(when: dt.datetime | None) -> str | None:
    """ISO 8601 UTC with a trailing Z, or None for never."""
    if when is None:
        return None
    return utc(when).isoformat().replace("+00:00", "Z")
