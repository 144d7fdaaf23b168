"""Checking what a technician typed (durations, status and kind names, limits, names).

Every function here either returns a clean value or raises `InvalidArgument`
with one sentence that says what was wrong and what would be right.
"""

from __future__ import annotations

import datetime as dt
import re

from cli.models import KINDS, STATUSES
from common.errors import InvalidArgument
from common.names import check_name

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+)([smhdw])")

MIN_TOKEN_LIFETIME = dt.timedelta(minutes=1)
MAX_TOKEN_LIFETIME = dt.timedelta(days=30)
MAX_LIMIT = 1000


def parse_duration(text: str) -> dt.timedelta:
    """Parse `30m`, `24h`, `7d`, `1h30m` (units s, m, h, d, w) into a timedelta."""
    cleaned = text.strip().lower()
    parts = _DURATION.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise InvalidArgument(
            f"'{text}' is not a duration: use a number and a unit, like 30m, 24h or 7d"
        )
    seconds = sum(int(number) * _UNITS[unit] for number, unit in parts)
    return dt.timedelta(seconds=seconds)


def token_lifetime(text: str) -> dt.timedelta:
    """Parse a token lifetime and keep it between one minute and 30 days."""
    lifetime = parse_duration(text)
    if not MIN_TOKEN_LIFETIME <= lifetime <= MAX_TOKEN_LIFETIME:
        raise InvalidArgument(
            f"a token lifetime of '{text}' is out of range: use between 1m and 30d"
        )
    return lifetime


def status_name(text: str) -> str:
    """Return a known site status name (case-insensitive)."""
    name = text.strip().lower()
    if name not in STATUSES:
        raise InvalidArgument(f"unknown status '{text}': use one of {', '.join(STATUSES)}")
    return name


def kind_name(text: str) -> str:
    """Return a known run kind name; `image_sync` is accepted for `image-sync`."""
    name = text.strip().lower().replace("_", "-")
    if name not in KINDS:
        raise InvalidArgument(f"unknown run kind '{text}': use one of {', '.join(KINDS)}")
    return name


def limit(value: int) -> int:
    """Return `value` when it is a row limit the server accepts (1-1000)."""
    if not 1 <= value <= MAX_LIMIT:
        raise InvalidArgument(f"a limit of {value} is out of range: use 1 to {MAX_LIMIT}")
    return value


def name(text: str, what: str = "site") -> str:
    """Return a site or group name (1-64 letters, digits, '.', '_', '-'; trimmed)."""
    return check_name(text, what)


def assignment(text: str) -> tuple[str, str]:
    """Split `KEY=VALUE` at the first `=`; the value may be empty or hold more `=`.

    Only the shape is checked here: whether the key exists and the value is
    right is for the server to say (one source of truth).
    """
    key, equals, value = text.partition("=")
    key = key.strip()
    if not equals or not key or any(c.isspace() for c in key):
        raise InvalidArgument(
            f"'{text}' is not KEY=VALUE: write it like backup.schedule='0 21 * * *'"
        )
    return key, value


def assignments(texts: list[str], unset: list[str]) -> dict[str, str]:
    """`KEY=VALUE` arguments as a dict; a key given twice, or both set and unset, is refused."""
    found: dict[str, str] = {}
    for text in texts:
        key, value = assignment(text)
        if key in found:
            raise InvalidArgument(f"the key {key} is given twice: give each key once")
        found[key] = value
    for key in unset:
        if key.strip() in found:
            raise InvalidArgument(f"the key {key.strip()} is both set and unset: choose one")
    return found


def layer(fleet: bool, group: str | None, site: str | None) -> tuple[str, str]:
    """The one layer a change applies to: ("fleet", ""), ("group", G) or ("site", S)."""
    given = {"fleet": fleet, "group": group is not None, "site": site is not None}
    chosen = [scope for scope, on in given.items() if on]
    if len(chosen) != 1:
        raise InvalidArgument("choose exactly one layer: --fleet, --group GROUP or --site SITE")
    if chosen[0] == "group":
        return "group", name(group or "", "group")
    if chosen[0] == "site":
        return "site", name(site or "", "site")
    return "fleet", ""
