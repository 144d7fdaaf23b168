"""How the status page writes moments, ages, sizes and durations (Jinja filters)."""

from __future__ import annotations

import datetime as dt

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def when(value: dt.datetime | None) -> str:
    return "never" if value is None else f"{value.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def iso(value: dt.datetime | None) -> str:
    return "" if value is None else value.astimezone(dt.UTC).isoformat(timespec="seconds")


def age(value: dt.datetime | None, now: dt.datetime) -> str:
    if value is None:
        return "never"
    seconds = (now - value).total_seconds()
    if seconds < 0:
        return "in the future"
    return f"{duration(seconds)} ago"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} d"


def size(count: float) -> str:
    value = float(count)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
