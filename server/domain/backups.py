"""What a stored run says about its site: a good backup, the summary facts it moves, its file.

A backup is good once it succeeded and its verification passed (RunRecord.good);
only a good backup moves `last_good_backup_at`. Each run kind with a summary moves
its own time column and the facts beside it (an older run never overwrites a
newer one: the state applies these values only forward in time). A backup run's
data file starts `kept`, or `damaged` when its own verification marked it `.bad`.
"""

from __future__ import annotations

from typing import Any

from server.domain.records import RunRecord
from server.domain.status import image_sync_warning

SUMMARY_COLUMN = {
    "backup": "last_backup_at",
    "image-sync": "last_image_sync_at",
    "validation": "last_validation_at",
    "drill": "last_drill_at",
    "store-check": "last_store_check_at",
}
"""The site column each kind of run moves forward; other kinds move none."""
LINKED_KINDS = {"upload": "upload", "drill": "drill"}
"""Run kinds about one backup run (details field backup_run_id), by their details field."""


def good_backup(run: RunRecord) -> bool:
    """A backup run that counts: it succeeded and its verification passed."""
    return run.kind == "backup" and run.good


def passed_drill(run: RunRecord) -> bool:
    """A restore drill that proved the off-site copy restorable."""
    return run.kind == "drill" and run.outcome == "succeeded"


def backup_run_of(run: RunRecord) -> str:
    """The backup run an upload or drill run is about ("" for other kinds)."""
    field = LINKED_KINDS.get(run.kind)
    if field is None:
        return ""
    return str(run.details.get(field, {}).get("backup_run_id", "") or "")


def offsite_figures(
    backup: dict[str, Any] | None, uploads: list[dict[str, Any]]
) -> tuple[int, int]:
    """(sealed bytes sent, backup file size) of the off-site copy of one backup: the bytes
    its upload runs sent, added up (an interrupted upload resumes in a later run), and the
    compressed file's size as an upload run reported it, else as the backup run did.
    Details in their stored JSON form (64-bit integers as text)."""
    sent = sum(int(u.get("bytes_sent", 0) or 0) for u in uploads)
    size = max((int(u.get("backup_size", 0) or 0) for u in uploads), default=0)
    if not size and backup:
        size = int(backup.get("size_compressed", 0) or 0)
    return sent, size


def summary_values(run: RunRecord) -> dict[str, Any]:
    """The site columns the run sets, its kind's time column first; empty for a kind
    without a summary (upload, file-check)."""
    col = SUMMARY_COLUMN.get(run.kind)
    if col is None:
        return {}
    values: dict[str, Any] = {col: run.finished_at}
    if run.kind == "drill":
        values["last_drill_outcome"] = run.outcome
        return values
    if run.kind == "store-check":
        return values
    ok = run.good if run.kind == "backup" else run.outcome == "succeeded"
    error = run.error_message or run.details.get("backup", {}).get("verification_message", "")
    if run.kind == "backup":
        values.update(last_backup_ok=ok, last_backup_error="" if ok else error)
        size = run.details.get("backup", {}).get("size_compressed")
        if size:
            values["last_backup_size"] = int(size)
    elif run.kind == "image-sync":
        values.update(
            last_image_sync_ok=ok,
            last_image_sync_error="" if ok else error,
            last_image_sync_warning=image_sync_warning(run.details.get("image_sync", {})),
        )
    else:
        found = run.details.get("validation", {})
        values.update(
            last_validation_errors=int(found.get("errors", 0 if ok else 1)),
            last_validation_summary=str(found.get("summary", error))[:500],
        )
    return values


def file_columns(run: RunRecord) -> dict[str, str]:
    """`backup_file` and its first `file_state` for a stored run: a backup run's file is
    kept, or damaged when its own verification marked it bad ("" for no file)."""
    name = run.backup_file
    if not name:
        return {"backup_file": "", "file_state": ""}
    path = str(run.details.get("backup", {}).get("file", ""))
    return {"backup_file": name, "file_state": "damaged" if path.endswith(".bad") else "kept"}
