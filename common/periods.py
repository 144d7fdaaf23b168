"""Calendar periods for retention: keep the newest item of each of the N newest days,
ISO weeks or months (UTC). Agent-side backup retention and server-side snapshot
retention both choose with this one function."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

T = TypeVar("T")


def day(when: dt.datetime) -> Hashable:
    """The UTC calendar day of `when`."""
    return utc(when).date()


def iso_week(when: dt.datetime) -> Hashable:
    """The ISO (year, week) of `when` in UTC."""
    return utc(when).isocalendar()[:2]


def month(when: dt.datetime) -> Hashable:
    """The UTC (year, month) of `when`."""
    found = utc(when)
    return (found.year, found.month)


def newest_per_period(
    items: Sequence[T],
    count: int,
    period: Callable[[dt.datetime], Hashable],
    when: Callable[[T], dt.datetime],
) -> list[T]:
    """The first item of each of the `count` first periods met, `items` newest first."""
    chosen: list[T] = []
    seen: set[Hashable] = set()
    for item in items:
        key = period(when(item))
        if key in seen:
            continue
        if len(seen) >= count:
            break
        seen.add(key)
        chosen.append(item)
    return chosen


def utc(when: dt.datetime) -> dt.datetime:
    """`when` in UTC (a naive time is taken as UTC)."""
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
