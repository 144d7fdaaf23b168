"""The rules of a run's details and of Firebird health, checked in their stored JSON form.

The JSON form is convert.message_dict's: 64-bit integers as strings, enums by
name. A field without a rule here is refused, and a test checks that every field
of the proto has one. Counts of things (tables, problems) are refused past their cap.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from common.errors import quote
from server.domain.rules import MAX_INT64, bad, file_name, integer, label, seconds, text

MAX_TABLES = 2000
MAX_PROBLEMS = 50
MAX_SKIP_REASONS = 20

_CHECKSUM = re.compile(r"[a-z0-9]{1,16}:[0-9a-f]{16,128}")
_ODS = re.compile(r"[0-9.]{0,16}")
_INTEGER_TEXT = re.compile(r"-?[0-9]{1,20}")
_SNAPSHOT_ID = re.compile(r"(?:[0-9a-f]{64})?")
_RUN_ID_OR_EMPTY = re.compile(r"[A-Za-z0-9-]{0,64}")

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
        raise bad(field, "is not a finite number")
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
            raise bad(field, f"{quote(value)} is not a known value")
        return value

    return rule


def _flag(field: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise bad(field, "is not true or false")
    return value


def pattern(regex: re.Pattern[str], what: str) -> Rule:
    def rule(field: str, value: Any) -> Any:
        if not regex.fullmatch(_string(field, value)):
            raise bad(field, f"{quote(value)} is not {what}")
        return value

    return rule


def _page_size(field: str, value: Any) -> Any:
    _json_int(field, value, 0, 65536)
    n = int(value)
    if n and (n < 1024 or n & (n - 1)):
        raise bad(field, f"{n} is not a Firebird page size")
    return value


def _string(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise bad(field, "is not text")
    return value


def _table_counts(field: str, value: Any) -> Any:
    if not isinstance(value, dict):
        raise bad(field, "is not a map")
    if len(value) > MAX_TABLES:
        raise bad(field, f"{len(value)} tables; at most {MAX_TABLES}")
    for table, rows in value.items():
        label(f"{field} key", table, 63, required=True)
        _json_int(f"{field}[{quote(table)}]", rows, 0, MAX_INT64)
    return value


def _problems(field: str, value: Any) -> Any:
    if not isinstance(value, list):
        raise bad(field, "is not a list")
    if len(value) > MAX_PROBLEMS:
        raise bad(field, f"{len(value)} entries; at most {MAX_PROBLEMS}")
    return [text(f"{field}[{i}]", _string(field, p), 500) for i, p in enumerate(value)]


def _message(spec: Mapping[str, Rule]) -> Rule:
    def rule(field: str, value: Any) -> Any:
        return checked_fields(field, value, spec)

    return rule


def checked_fields(field: str, body: Any, spec: Mapping[str, Rule]) -> dict[str, Any]:
    """`body` (a message in JSON form) with every field passed through its rule;
    a field without a rule is refused."""
    if not isinstance(body, dict):
        raise bad(field, "is not a message")
    out: dict[str, Any] = {}
    for key, value in body.items():
        rule = spec.get(key)
        if rule is None:
            raise bad(f"{field}.{key}" if field else key, "is not a known field")
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
    "ods": pattern(_ODS, "an on-disk structure version"),
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
    "checksum": pattern(_CHECKSUM, "an algorithm:hex checksum"),
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
    "raw_checksum": pattern(_CHECKSUM, "an algorithm:hex checksum"),
}


def _skipped(field: str, value: Any) -> Any:
    if not isinstance(value, dict):
        raise bad(field, "is not a map")
    if len(value) > MAX_SKIP_REASONS:
        raise bad(field, f"{len(value)} reasons; at most {MAX_SKIP_REASONS}")
    for reason, count in value.items():
        label(f"{field} key", reason, 32, required=True)
        _json_int(f"{field}[{quote(reason)}]", count, 0, MAX_INT64)
    return value


IMAGE_SYNC_DETAILS: dict[str, Rule] = {
    "files_scanned": _count(),
    "files_copied": _count(),
    "bytes_copied": _count(),
    "files_failed": _count(),
    "files_new": _count(),
    "files_changed": _count(),
    "files_deleted": _count(),
    "files_unchanged": _count(),
    "bytes_read": _count(),
    "chunks_sent": _count(),
    "snapshot_id": pattern(_SNAPSHOT_ID, "a snapshot id (64 lowercase hex digits)"),
    "folder_missing": _flag,
    "folder_empty": _flag,
    "skipped": _skipped,
    "stable_files": _count(),
    "stable_changed": _count(),
}
VALIDATION_DETAILS: dict[str, Rule] = {
    "errors": _count(2**31 - 1),
    "warnings": _count(2**31 - 1),
    "summary": _text(2000),
}
UPLOAD_DETAILS: dict[str, Rule] = {
    "file": _file,
    "bytes": _count(),
    "backup_run_id": pattern(_RUN_ID_OR_EMPTY, "a run id"),
    "snapshot_id": pattern(_SNAPSHOT_ID, "a snapshot id (64 lowercase hex digits)"),
    "backup_size": _count(),
    "bytes_sent": _count(),
    "chunks_sent": _count(),
    "chunks_present": _count(),
    "complete": _flag,
    "paused_reason": _text(500),
}
# Drills are recorded by the admin CLI and store checks by the server itself; agents never
# send these kinds (ingest refuses them), so their rules judge what the admin side stores.
DRILL_DETAILS: dict[str, Rule] = {
    "snapshot_id": pattern(_SNAPSHOT_ID, "a snapshot id (64 lowercase hex digits)"),
    "backup_run_id": pattern(_RUN_ID_OR_EMPTY, "a run id"),
    "bytes_fetched": _count(),
    "backup_bytes": _count(),
    "checksum_ok": _flag,
    "restored": _flag,
    "validation_errors": _count(2**31 - 1),
    "table_counts": _table_counts,
    "host": _label(255),
    "fetch_seconds": _duration,
    "restore_seconds": _duration,
}
MAX_NAMED_CHUNKS = 100
"""Chunk ids a store check names of each kind (damaged, missing); the counts say the rest."""
MAX_NAMED_SNAPSHOTS = 1000
_CHUNK_ID = re.compile(r"[0-9a-f]{64}")
_RUN_ID = re.compile(r"[A-Za-z0-9-]{1,64}")


def _percent(field: str, value: Any) -> Any:
    if isinstance(value, str) or not isinstance(value, int | float) or isinstance(value, bool):
        raise bad(field, "is not a finite number")
    if not 0 < value <= 100:
        raise bad(field, f"{value} is not a share in percent (more than 0, at most 100)")
    return value


def _ids(regex: re.Pattern[str], what: str, limit: int) -> Rule:
    def rule(field: str, value: Any) -> Any:
        if not isinstance(value, list):
            raise bad(field, "is not a list")
        if len(value) > limit:
            raise bad(field, f"{len(value)} entries; at most {limit}")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not regex.fullmatch(item):
                raise bad(f"{field}[{i}]", f"{quote(item)} is not {what}")
        return value

    return rule


STORE_CHECK_DETAILS: dict[str, Rule] = {
    "sample_percent": _percent,
    "chunks_checked": _count(),
    "bytes_checked": _count(),
    "damaged_chunks": _ids(_CHUNK_ID, "a chunk id", MAX_NAMED_CHUNKS),
    "missing_chunks": _ids(_CHUNK_ID, "a chunk id", MAX_NAMED_CHUNKS),
    "damaged_count": _count(),
    "missing_count": _count(),
    "broken_snapshots": _ids(_CHUNK_ID, "a snapshot id", MAX_NAMED_SNAPSHOTS),
    "broken_backup_runs": _ids(_RUN_ID, "a run id", MAX_NAMED_SNAPSHOTS),
}
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
    "drill": DRILL_DETAILS,
    "store_check": STORE_CHECK_DETAILS,
}
"""The rules of each details message of a run report, by its field name in RunReport."""
