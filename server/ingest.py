"""Ingest validation: the one set of rules every value an agent sends must pass.

Pure functions over plain values (no gRPC, no protobuf, no state): rpc/convert.py
copies a message's fields into the `...Input` records below without judging them,
and the functions here turn those into the domain records the state stores, or
raise InvalidArgument naming the field (`report.backup.file`, `disks[2].free_bytes`).

One behaviour per kind of field:
- identifiers, names, labels and paths: refused when too long or when they hold a
  control character (NUL included); file names must be bare names;
- free text (error messages, verification messages, problems): cut to its cap,
  refused when it holds a NUL or another control character than tab and newlines;
- numbers: refused outside their bounds, and doubles unless finite;
- enums: refused unless one of the known values;
- counts of things (disks, tables, problems): refused past their cap.

Error texts stay short: a value is quoted to at most ~60 characters (errors.quote).
The details of a run are checked in their stored JSON form (convert.message_dict:
64-bit integers as strings, enums by name); a details field without a rule here is
refused, and a test checks that every field of the proto has one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from common.errors import InvalidArgument, quote
from common.names import NAME
from server.domain import CheckInFacts, FileChange, RunRecord
from server.services.status import Disk

KINDS = ("backup", "image-sync", "upload", "validation", "file-check")
OUTCOMES = ("succeeded", "failed")
VERIFICATIONS = ("passed", "failed", "not-run")
COMMAND_OUTCOMES = ("succeeded", "failed", "rejected")
DETAILS_OF_KIND = {
    "backup": "backup",
    "image-sync": "image_sync",
    "validation": "validation",
    "upload": "upload",
    "file-check": "file_check",
}
CHANGED_FILE_STATES = ("pruned", "damaged", "missing")  # what a file change may report

MAX_INT64 = 2**63 - 1
MAX_REVISION = 2**31 - 1
MAX_DISKS = 16
MAX_TABLES = 2000
MAX_PROBLEMS = 50
MAX_FILE_CHANGES = 1000
MAX_SECONDS = 10_000_000.0  # a duration of ~115 days is already absurd
MAX_RUN_LENGTH = dt.timedelta(days=30)
MAX_FUTURE = dt.timedelta(days=1)
MAX_TOKEN = 256

_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# google.protobuf.Timestamp's own range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NUL_OR_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # text keeps \t \n \r
_RUN_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_ERROR_CLASS = re.compile(r"[A-Za-z0-9_.:-]{0,64}")
_TRIGGER = re.compile(r"[a-z-]{0,16}")
_CHECKSUM = re.compile(r"[a-z0-9]{1,16}:[0-9a-f]{16,128}")
_ODS = re.compile(r"[0-9.]{0,16}")
_INTEGER_TEXT = re.compile(r"-?[0-9]{1,20}")

Stamp = tuple[int, int] | None
"""A timestamp as sent: (seconds, nanos), or None when it was not set."""


@dataclasses.dataclass(frozen=True, slots=True)
class RunInput:
    """A run report's fields as sent. Enums arrive as their domain names, "" when
    unset, or the number as text when the value is unknown."""

    id: str
    kind: str
    started_at: Stamp
    finished_at: Stamp
    outcome: str
    error_class: str
    error_message: str
    trigger: str
    details_kind: str | None
    details: dict[str, Any]
    verification: str = ""
    file_changes: tuple[FileChange, ...] = ()  # as sent: a state unknown is its number


@dataclasses.dataclass(frozen=True, slots=True)
class CheckInInput:
    """A check-in's fields as sent; `firebird` in its stored JSON form."""

    agent_version: str
    hostname: str
    os: str
    agent_time: Stamp
    config_revision: int
    disks: tuple[Disk, ...]
    firebird: dict[str, Any] | None
    outbox_pending: int


@dataclasses.dataclass(frozen=True, slots=True)
class EnrollInput:
    """What an agent sends to enroll."""

    token: str
    site: str
    hostname: str
    agent_version: str = ""
    os: str = ""


# --- scalar rules -------------------------------------------------------------


def _bad(field: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {why}")


def label(field: str, value: str, limit: int, *, required: bool = False) -> str:
    """A one-line name or label: at most `limit` characters, no control characters."""
    if len(value) > limit:
        raise _bad(field, f"longer than {limit} characters")
    if _CONTROL.search(value):
        raise _bad(field, f"holds a control character: {quote(value)}")
    if required and not value:
        raise _bad(field, "is required")
    return value


def text(field: str, value: str, limit: int) -> str:
    """Free text (a message): cut to `limit` characters; refused if it holds a NUL or
    another control character than tab and line breaks."""
    value = value[:limit]
    if _NUL_OR_CONTROL.search(value):
        raise _bad(field, f"holds a control character: {quote(value)}")
    return value


def file_name(field: str, value: str) -> str:
    """A bare file name (no directory part, not '.' or '..'), or empty."""
    label(field, value, 255)
    if "/" in value or "\\" in value or value in (".", "..") or ":" in value:
        raise _bad(field, f"must be a bare file name, not {quote(value)}")
    return value


def integer(field: str, value: int, low: int, high: int) -> int:
    """An integer in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(field, "is not an integer")
    if not low <= value <= high:
        raise _bad(field, f"{quote(value)} is outside {low}..{high}")
    return value


def revision(field: str, value: int) -> int:
    """A configuration revision: 0 (none) or one the server can have made."""
    return integer(field, value, 0, MAX_REVISION)


def seconds(field: str, value: float) -> float:
    """A duration in seconds: finite, not negative, below ~115 days."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(field, "is not a finite number")
    if not math.isfinite(value):
        raise _bad(field, "is not a finite number")
    if not 0 <= value <= MAX_SECONDS:
        raise _bad(field, f"{value:g} seconds is not a plausible duration")
    return value


def timestamp(field: str, secs: int, nanos: int) -> dt.datetime:
    """A google.protobuf.Timestamp as an aware UTC datetime, within its own range."""
    if not 0 <= nanos <= 999_999_999:
        raise _bad(field, f"nanos {quote(nanos)} is outside 0..999999999")
    if not _MIN_SECONDS <= secs <= _MAX_SECONDS:
        raise _bad(field, "is not a valid timestamp (years 1 to 9999)")
    return _EPOCH_UTC + dt.timedelta(seconds=secs, microseconds=nanos // 1000)


def choice(field: str, value: str, allowed: tuple[str, ...], *, required: bool = True) -> str:
    """One of `allowed` ("" only when not required)."""
    if value in allowed or (not value and not required):
        return value
    if not value:
        raise _bad(field, f"is missing (one of {', '.join(allowed)})")
    raise _bad(field, f"{quote(value)} is not one of {', '.join(allowed)}")


def name(field: str, value: str) -> str:
    """A site or group name (common.names), quoted short when refused."""
    if not NAME.fullmatch(value):
        raise _bad(field, f"{quote(value)} is not a name of 1-64 letters, digits, '.', '_', '-'")
    return value


# --- rules for the JSON form of nested messages ---------------------------------

Rule = Callable[[str, Any], Any]


def _json_int(field: str, value: Any, low: int, high: int) -> Any:
    """An integer in its JSON form (64-bit ones as text) within [low, high]; kept as is."""
    if isinstance(value, str) and _INTEGER_TEXT.fullmatch(value):
        integer(field, int(value), low, high)
        return value
    integer(field, value, low, high)
    return value


def _count(high: int = MAX_INT64) -> Rule:
    return lambda field, value: _json_int(field, value, 0, high)


def _duration(field: str, value: Any) -> Any:
    if isinstance(value, str):  # MessageToDict writes NaN and infinities as text
        raise _bad(field, "is not a finite number")
    return seconds(field, value)


def _label(limit: int) -> Rule:
    return lambda field, value: label(field, _string(field, value), limit)


def _text(limit: int) -> Rule:
    return lambda field, value: text(field, _string(field, value), limit)


def _file(field: str, value: Any) -> Any:
    return file_name(field, _string(field, value))


def _enum(*names: str) -> Rule:
    def rule(field: str, value: Any) -> Any:
        if not isinstance(value, str) or value not in names:
            raise _bad(field, f"{quote(value)} is not a known value")
        return value

    return rule


def _flag(field: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise _bad(field, "is not true or false")
    return value


def _pattern(regex: re.Pattern[str], what: str) -> Rule:
    def rule(field: str, value: Any) -> Any:
        if not regex.fullmatch(_string(field, value)):
            raise _bad(field, f"{quote(value)} is not {what}")
        return value

    return rule


def _page_size(field: str, value: Any) -> Any:
    _json_int(field, value, 0, 65536)
    n = int(value)
    if n and (n < 1024 or n & (n - 1)):
        raise _bad(field, f"{n} is not a Firebird page size")
    return value


def _string(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _bad(field, "is not text")
    return value


def _table_counts(field: str, value: Any) -> Any:
    if not isinstance(value, dict):
        raise _bad(field, "is not a map")
    if len(value) > MAX_TABLES:
        raise _bad(field, f"{len(value)} tables; at most {MAX_TABLES}")
    for table, rows in value.items():
        label(f"{field} key", table, 63, required=True)
        _json_int(f"{field}[{quote(table)}]", rows, 0, MAX_INT64)
    return value


def _problems(field: str, value: Any) -> Any:
    if not isinstance(value, list):
        raise _bad(field, "is not a list")
    if len(value) > MAX_PROBLEMS:
        raise _bad(field, f"{len(value)} entries; at most {MAX_PROBLEMS}")
    return [text(f"{field}[{i}]", _string(field, p), 500) for i, p in enumerate(value)]


def _message(spec: Mapping[str, Rule]) -> Rule:
    def rule(field: str, value: Any) -> Any:
        return checked_fields(field, value, spec)

    return rule


def checked_fields(field: str, body: Any, spec: Mapping[str, Rule]) -> dict[str, Any]:
    """`body` (a message in JSON form) with every field passed through its rule;
    a field without a rule is refused."""
    if not isinstance(body, dict):
        raise _bad(field, "is not a message")
    out: dict[str, Any] = {}
    for key, value in body.items():
        rule = spec.get(key)
        if rule is None:
            raise _bad(f"{field}.{key}" if field else key, "is not a known field")
        out[key] = rule(f"{field}.{key}" if field else key, value)
    return out


FIREBIRD_HEALTH: dict[str, Rule] = {
    "oit": _count(),
    "oat": _count(),
    "ost": _count(),
    "next_transaction": _count(),
    "sweep_interval": _count(),
    "forced_writes": _flag,
    "page_size": _page_size,
    "ods": _pattern(_ODS, "an on-disk structure version"),
    "size_bytes": _count(),
    "backup_state": _count(2),
    "server_version": _label(128),
}
BACKUP_DETAILS: dict[str, Rule] = {
    "method": _enum("gbak", "nbackup"),
    "level": _count(31),
    "file": _file,
    "size_raw": _count(),
    "size_compressed": _count(),
    "checksum": _pattern(_CHECKSUM, "an algorithm:hex checksum"),
    "verification": _enum("VERIFICATION_PASSED", "VERIFICATION_FAILED", "VERIFICATION_NOT_RUN"),
    "verification_seconds": _duration,
    "verification_message": _text(2000),
    "table_counts": _table_counts,
    "firebird_version": _label(128),
    "database": _label(1024),
    "health": _message(FIREBIRD_HEALTH),
    "problems": _problems,
    "backup_seconds": _duration,
    "validation_errors": _count(2**31 - 1),
    "validation_warnings": _count(2**31 - 1),
}
IMAGE_SYNC_DETAILS: dict[str, Rule] = {
    "files_scanned": _count(),
    "files_copied": _count(),
    "bytes_copied": _count(),
    "files_failed": _count(),
}
VALIDATION_DETAILS: dict[str, Rule] = {
    "errors": _count(2**31 - 1),
    "warnings": _count(2**31 - 1),
    "summary": _text(2000),
}
UPLOAD_DETAILS: dict[str, Rule] = {"file": _file, "bytes": _count()}
FILE_CHECK_DETAILS: dict[str, Rule] = {
    "files_checked": _count(2**32 - 1),
    "bytes_checked": _count(),
    "files_damaged": _count(2**32 - 1),
    "restored": _file,
    "summary": _text(2000),
}
DETAILS: dict[str, dict[str, Rule]] = {
    "backup": BACKUP_DETAILS,
    "image_sync": IMAGE_SYNC_DETAILS,
    "validation": VALIDATION_DETAILS,
    "upload": UPLOAD_DETAILS,
    "file_check": FILE_CHECK_DETAILS,
}
"""The rules of each details message of a run report, by its field name in RunReport."""


# --- whole messages -----------------------------------------------------------


def run_record(run: RunInput, now: dt.datetime) -> RunRecord:
    """The run report as the server stores it, once every field passed its rule."""
    if not _RUN_ID.fullmatch(run.id):
        raise _bad("report.id", "needs 1-64 letters, digits and '-'")
    kind = choice("report.kind", run.kind, KINDS)
    outcome = choice("report.outcome", run.outcome, OUTCOMES)
    if run.started_at is None or run.finished_at is None:
        raise _bad("report", "a run report needs started_at and finished_at")
    started = timestamp("report.started_at", *run.started_at)
    finished = timestamp("report.finished_at", *run.finished_at)
    if finished < started:
        raise _bad("report.finished_at", "a run cannot finish before it started")
    if finished > now + MAX_FUTURE:
        raise _bad("report.finished_at", "more than a day in the future")
    if finished - started > MAX_RUN_LENGTH:
        raise _bad("report.started_at", "a run cannot last more than 30 days")
    details: dict[str, Any] = {}
    verification = ""
    if run.details_kind is not None:
        if run.details_kind != DETAILS_OF_KIND[kind]:
            raise _bad(f"report.{run.details_kind}", f"a {kind} run cannot carry these details")
        spec = DETAILS[run.details_kind]
        where = f"report.{run.details_kind}"
        details = {run.details_kind: checked_fields(where, run.details, spec)}
        if kind == "backup":
            verification = choice(
                "report.backup.verification", run.verification, VERIFICATIONS, required=False
            )
    return RunRecord(
        id=run.id,
        kind=kind,
        started_at=started,
        finished_at=finished,
        outcome=outcome,
        verification=verification,
        error_class=_pattern(_ERROR_CLASS, "an error class")("report.error_class", run.error_class),
        error_message=text("report.error_message", run.error_message, 2000),
        trigger=_pattern(_TRIGGER, "a trigger")("report.trigger", run.trigger),
        details=details,
        file_changes=_file_changes(run.file_changes),
    )


def _file_changes(changes: tuple[FileChange, ...]) -> tuple[FileChange, ...]:
    """Earlier backups whose file changed state: each names one file by its bare name."""
    if len(changes) > MAX_FILE_CHANGES:
        raise _bad("report.file_changes", f"{len(changes)} entries; at most {MAX_FILE_CHANGES}")
    out = []
    for i, change in enumerate(changes):
        field = f"report.file_changes[{i}]"
        if not change.file:
            raise _bad(f"{field}.file", "is required")
        out.append(
            FileChange(
                file_name(f"{field}.file", change.file),
                choice(f"{field}.state", change.state, CHANGED_FILE_STATES),
                text(f"{field}.reason", change.reason, 500),
            )
        )
    return tuple(out)


def checkin_facts(checkin: CheckInInput) -> CheckInFacts:
    """The check-in's facts, once every field passed its rule."""
    if len(checkin.disks) > MAX_DISKS:
        raise _bad("disks", f"{len(checkin.disks)} entries; at most {MAX_DISKS}")
    agent_time = None
    if checkin.agent_time is not None:
        agent_time = timestamp("agent_time", *checkin.agent_time)
    firebird = None
    if checkin.firebird is not None:
        firebird = checked_fields("firebird", checkin.firebird, FIREBIRD_HEALTH)
    return CheckInFacts(
        agent_version=label("agent_version", checkin.agent_version, 64),
        hostname=label("hostname", checkin.hostname, 255),
        os=label("os", checkin.os, 255),
        agent_time=agent_time,
        config_revision=revision("config_revision", checkin.config_revision),
        disks=tuple(_disk(f"disks[{i}]", d) for i, d in enumerate(checkin.disks)),
        firebird=firebird,
        outbox_pending=integer("outbox_pending", checkin.outbox_pending, 0, 2**32 - 1),
    )


def _disk(field: str, disk: Disk) -> Disk:
    label(f"{field}.label", disk.label, 32)
    label(f"{field}.path", disk.path, 1024)
    integer(f"{field}.total_bytes", disk.total_bytes, 0, MAX_INT64)
    integer(f"{field}.free_bytes", disk.free_bytes, 0, MAX_INT64)
    if disk.free_bytes > disk.total_bytes:
        raise _bad(f"{field}.free_bytes", "larger than total_bytes")
    return disk


def enroll(request: EnrollInput) -> EnrollInput:
    """The enrollment request, once every field passed its rule (the site trimmed)."""
    label("token", request.token, MAX_TOKEN)
    site = name("site", request.site.strip())
    return dataclasses.replace(
        request,
        site=site,
        hostname=label("hostname", request.hostname, 255),
        agent_version=label("agent_version", request.agent_version, 64),
        os=label("os", request.os, 255),
    )


def config_ack_error(error: str) -> str:
    """Why an agent refused a revision, as stored."""
    return text("error", error, 500)


def command_ack(command_id: str, outcome: str, message: str) -> tuple[str, str, str]:
    """(command_id, outcome, message) of a command acknowledgement, as stored."""
    if not _RUN_ID.fullmatch(command_id):
        raise _bad("command_id", "needs 1-64 letters, digits and '-'")
    return (
        command_id,
        choice("outcome", outcome, COMMAND_OUTCOMES),
        text("message", message, 2000),
    )
