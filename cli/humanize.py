"""How values read for people: ages like "3h ago", timestamps, sizes, durations.

Pure functions of their arguments (the current time is passed in), used by
`cli.output` for the text views.
"""

from __future__ import annotations

import datetime as dt


def ago(when: dt.datetime | None, now: dt.datetime) -> str:
    """`never`, `just now`, `5m ago`, `3h ago`, `2d ago` (or `in 5m` for the future)."""
    if when is None:
        return "never"
    seconds = int((now - when).total_seconds())
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 60:
        return "just now"
    step, unit = next((s, u) for s, u in ((86400, "d"), (3600, "h"), (60, "m")) if seconds >= s)
    amount = f"{seconds // step}{unit}"
    return f"in {amount}" if future else f"{amount} ago"


def timestamp(when: dt.datetime | None, now: dt.datetime) -> str:
    """`2026-11-26 19:04 UTC (3h ago)`, or `never`."""
    if when is None:
        return "never"
    return f"{when.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC ({ago(when, now)})"


def size(count: int) -> str:
    """Bytes as `512 B`, `1.5 KiB`, `3.2 GiB`."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def seconds_text(seconds: float) -> str:
    """A duration such as `0.4s`, `42s`, `3m12s`, `1h05m`."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def format_duration(delta: dt.timedelta) -> str:
    """Render a duration the way `parse_duration` reads it, largest units first."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
