"""google.protobuf.Timestamp <-> aware UTC datetimes, fast for the common UTC case."""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from server.domain import rules
from server.domain.ingest import Stamp

_EPOCH = dt.datetime(1970, 1, 1)  # naive: compared with naive UTC values only


def ts(when: dt.datetime | None) -> Timestamp | None:
    if when is None:
        return None
    out = Timestamp()
    if when.tzinfo is dt.UTC or when.tzinfo is None:
        # what FromDatetime computes, without its time tuple (ListSites makes 40,000)
        since = when.replace(tzinfo=None) - _EPOCH
        out.seconds = since.days * 86_400 + since.seconds
        out.nanos = when.microsecond * 1000
    else:
        out.FromDatetime(when)
    return out


def from_ts(msg: Any, field: str) -> dt.datetime | None:
    """The timestamp field as an aware UTC datetime, None when unset; one outside the
    Timestamp range is an InvalidArgument (rules.timestamp)."""
    sent = stamp(msg, field)
    return None if sent is None else rules.timestamp(field, *sent)


def stamp(msg: Any, field: str) -> Stamp:
    """A timestamp field as sent (seconds, nanos), None when unset; judged by ingest."""
    if not msg.HasField(field):
        return None
    stamp = getattr(msg, field)
    return (stamp.seconds, stamp.nanos)


def put_ts(field: Timestamp, when: dt.datetime | None) -> None:
    """Set a Timestamp field in place to `when` (as ts() would); None leaves it unset."""
    if when is None:
        return
    if when.tzinfo is dt.UTC or when.tzinfo is None:
        since = when.replace(tzinfo=None) - _EPOCH
        field.seconds = since.days * 86_400 + since.seconds  # sets the field even when 0
        field.nanos = when.microsecond * 1000
    else:
        field.FromDatetime(when)
