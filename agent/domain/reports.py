"""Run reports in domain form: what the agent records about every finished job.

These dataclasses mirror `storesafe.v1.RunReport`; only agent/transport
converts them to and from protobuf. They serialise to JSON for the outbox.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from typing import Any


class RunKind(enum.StrEnum):
    BACKUP = "backup"
    IMAGE_SYNC = "image-sync"
    UPLOAD = "upload"
    VALIDATION = "validation"
    FILE_CHECK = "file-check"


class Outcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Verification(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    NOT_RUN = "not-run"


class FileState(enum.StrEnum):
    """What became of an earlier backup's file in backup.dir."""

    KEPT = "kept"
    PRUNED = "pruned"
    DAMAGED = "damaged"
    MISSING = "missing"


@dataclasses.dataclass(frozen=True)
class FileChange:
    """One earlier backup's file changed state; `file` is its name as first reported."""

    file: str
    state: FileState
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class DiskUsage:
    label: str
    path: str
    total_bytes: int
    free_bytes: int


@dataclasses.dataclass(frozen=True)
class FirebirdHealth:
    oit: int = 0
    oat: int = 0
    ost: int = 0
    next_transaction: int = 0
    sweep_interval: int = 0
    forced_writes: bool = True
    page_size: int = 0
    ods: str = ""
    size_bytes: int = 0
    backup_state: int = 0
    server_version: str = ""


@dataclasses.dataclass(frozen=True)
class BackupDetails:
    method: str = "gbak"
    level: int = 0
    file: str = ""
    size_raw: int = 0
    size_compressed: int = 0
    checksum: str = ""  # "sha256:<hex>" of the compressed file in backup.dir
    raw_checksum: str = ""  # "sha256:<hex>" of the uncompressed backup stream
    verification: Verification = Verification.NOT_RUN
    verification_seconds: float = 0.0
    verification_message: str = ""
    table_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    firebird_version: str = ""
    database: str = ""
    health: FirebirdHealth | None = None
    problems: tuple[str, ...] = ()
    backup_seconds: float = 0.0
    # what Firebird's validation of the restored copy counted (warnings are not damage)
    validation_errors: int = 0
    validation_warnings: int = 0


@dataclasses.dataclass(frozen=True)
class ImageSyncDetails:
    """The figures of one image-sync pass (see ImageSyncDetails in types.proto)."""

    files_scanned: int = 0
    files_copied: int = 0
    bytes_copied: int = 0  # sealed bytes sent to the off-site store
    files_failed: int = 0  # skipped, all reasons
    files_new: int = 0
    files_changed: int = 0
    files_deleted: int = 0
    files_unchanged: int = 0
    bytes_read: int = 0
    chunks_sent: int = 0
    snapshot_id: str = ""
    folder_missing: bool = False
    folder_empty: bool = False
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)
    stable_files: int = 0
    stable_changed: int = 0  # of the stable files, changed or deleted by this pass
    current_snapshot_id: str = ""  # committed now, or the last one when nothing changed
    incomplete: str = ""  # why the pass stopped before it could commit ("" when complete)
    summary: str = ""  # one line on how the pass ended


@dataclasses.dataclass(frozen=True)
class ValidationDetails:
    errors: int = 0
    warnings: int = 0
    summary: str = ""


@dataclasses.dataclass(frozen=True)
class UploadDetails:
    """One off-site upload run of a verified backup (see UploadDetails in types.proto)."""

    file: str = ""  # the backup's final file name in backup.dir
    bytes: int = 0  # of the logical stream(s) read and chunked
    backup_run_id: str = ""
    snapshot_id: str = ""  # the database snapshot committed; "" when the run did not finish
    backup_size: int = 0  # the compressed file(s) in backup.dir
    bytes_sent: int = 0  # sealed bytes sent in this run (manifest included)
    chunks_sent: int = 0
    chunks_present: int = 0  # asked about and already stored
    complete: bool = False
    paused_reason: str = ""  # why it stopped early (window closed, time budget)


@dataclasses.dataclass(frozen=True)
class FileCheckDetails:
    """A re-check of the kept backup files: checksums, and now and then one full restore."""

    files_checked: int = 0
    bytes_checked: int = 0
    files_damaged: int = 0
    restored: str = ""  # the backup verified again by restore in this check
    summary: str = ""


Details = BackupDetails | ImageSyncDetails | ValidationDetails | UploadDetails | FileCheckDetails

_DETAIL_TYPES: dict[str, type[Any]] = {
    "backup": BackupDetails,
    "image_sync": ImageSyncDetails,
    "validation": ValidationDetails,
    "upload": UploadDetails,
    "file_check": FileCheckDetails,
}


@dataclasses.dataclass(frozen=True)
class RunReport:
    """One finished job. `id` makes delivery idempotent."""

    kind: RunKind
    started_at: dt.datetime
    finished_at: dt.datetime
    outcome: Outcome
    details: Details | None = None
    error_class: str = ""
    error_message: str = ""
    trigger: str = "schedule"
    id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    file_changes: tuple[FileChange, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (times as ISO 8601 UTC) for the outbox."""
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind.value,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "outcome": self.outcome.value,
            "error_class": self.error_class,
            "error_message": self.error_message,
            "trigger": self.trigger,
            "details": None,
            "file_changes": [
                {"file": c.file, "state": c.state.value, "reason": c.reason}
                for c in self.file_changes
            ],
        }
        if self.details is not None:
            name = next(k for k, t in _DETAIL_TYPES.items() if isinstance(self.details, t))
            out["details"] = {"type": name, **_jsonable(dataclasses.asdict(self.details))}
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunReport:
        """Inverse of `to_json`."""
        details: Details | None = None
        raw = data.get("details")
        if raw:
            raw = dict(raw)
            dtype = _DETAIL_TYPES[raw.pop("type")]
            if dtype is BackupDetails:
                health = raw.get("health")
                raw["health"] = FirebirdHealth(**health) if health else None
                raw["verification"] = Verification(raw.get("verification", "not-run"))
                raw["problems"] = tuple(raw.get("problems", ()))
            details = dtype(**raw)
        return cls(
            id=data["id"],
            kind=RunKind(data["kind"]),
            started_at=dt.datetime.fromisoformat(data["started_at"]),
            finished_at=dt.datetime.fromisoformat(data["finished_at"]),
            outcome=Outcome(data["outcome"]),
            error_class=data.get("error_class", ""),
            error_message=data.get("error_message", ""),
            trigger=data.get("trigger", "schedule"),
            details=details,
            file_changes=tuple(
                FileChange(c["file"], FileState(c["state"]), c.get("reason", ""))
                for c in data.get("file_changes", ())
            ),
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value
