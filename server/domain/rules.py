"""Scalar ingest rules: names, labels, text, numbers, timestamps and choices.

Each rule takes the field's name (`report.backup.file`, `disks[2].free_bytes`) and
its value, returns the value when it passes, or raises InvalidArgument naming the
field in one short sentence (a value is quoted to at most ~60 characters).

One behaviour per kind of field:
- identifiers, names, labels and paths: refused when too long or when they hold a
  control character (NUL included); file names must be bare names;
- free text (error messages, verification messages, problems): cut to its cap,
  refused when it holds a NUL or another control character than tab and newlines;
- numbers: refused outside their bounds, and doubles unless finite;
- enums: refused unless one of the known values.
"""

from __future__ import annotations

import datetime as dt
import math
import re

from common.errors import InvalidArgument, quote
from common.names import NAME

MAX_INT64 = 2**63 - 1
MAX_REVISION = 2**31 - 1
MAX_SECONDS = 10_000_000.0  # a duration of ~115 days is already absurd

_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# google.protobuf.Timestamp's own range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NUL_OR_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # text keeps \t \n \r


def bad(field: str, why: str) -> InvalidArgument:
    """The error that refuses `field`, saying why."""
    return InvalidArgument(f"{field}: {why}")


def label(field: str, value: str, limit: int, *, required: bool = False) -> str:
    """A one-line name or label: at most `limit` characters, no control characters."""
    if len(value) > limit:
        raise bad(field, f"longer than {limit} characters")
    if _CONTROL.search(value):
        raise bad(field, f"holds a control character: {quote(value)}")
    if required and not value:
        raise bad(field, "is required")
    return value


def text(field: str, value: str, limit: int) -> str:
    """Free text (a message): cut to `limit` characters; refused if it holds a NUL or
    another control character than tab and line breaks."""
    value = value[:limit]
    if _NUL_OR_CONTROL.search(value):
        raise bad(field, f"holds a control character: {quote(value)}")
    return value


def file_name(field: str, value: str) -> str:
    """A bare file name (no directory part, not '.' or '..'), or empty."""
    label(field, value, 255)
    if "/" in value or "\\" in value or value in (".", "..") or ":" in value:
        raise bad(field, f"must be a bare file name, not {quote(value)}")
    return value


def integer(field: str, value: int, low: int, high: int) -> int:
    """An integer in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(field, "is not an integer")
    if not low <= value <= high:
        raise bad(field, f"{quote(value)} is outside {low}..{high}")
    return value


def revision(field: str, value: int) -> int:
    """A configuration revision: 0 (none) or one the server can have made."""
    return integer(field, value, 0, MAX_REVISION)


def seconds(field: str, value: float) -> float:
    """A duration in seconds: finite, not negative, below ~115 days."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(field, "is not a finite number")
    if not math.isfinite(value):
        raise bad(field, "is not a finite number")
    if not 0 <= value <= MAX_SECONDS:
        raise bad(field, f"{value:g} seconds is not a plausible duration")
    return value


def timestamp(field: str, secs: int, nanos: int) -> dt.datetime:
    """A google.protobuf.Timestamp as an aware UTC datetime, within its own range."""
    if not 0 <= nanos <= 999_999_999:
        raise bad(field, f"nanos {quote(nanos)} is outside 0..999999999")
    if not _MIN_SECONDS <= secs <= _MAX_SECONDS:
        raise bad(field, "is not a valid timestamp (years 1 to 9999)")
    return _EPOCH_UTC + dt.timedelta(seconds=secs, microseconds=nanos // 1000)


def choice(field: str, value: str, allowed: tuple[str, ...], *, required: bool = True) -> str:
    """One of `allowed` ("" only when not required)."""
    if value in allowed or (not value and not required):
        return value
    if not value:
        raise bad(field, f"is missing (one of {', '.join(allowed)})")
    raise bad(field, f"{quote(value)} is not one of {', '.join(allowed)}")


def name(field: str, value: str) -> str:
    """A site or group name (common.names), quoted short when refused."""
    if not NAME.fullmatch(value):
        raise bad(field, f"{quote(value)} is not a name of 1-64 letters, digits, '.', '_', '-'")
    return value
