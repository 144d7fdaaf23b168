"""Rendering of `storesafe images`: the snapshot list and what a restore did.

Same rules as `cli.output`: JSON field names are a contract, ISO 8601 UTC times
with a trailing Z, `null` for never; text one line per row.
"""

from __future__ import annotations

from typing import Any

from cli.humanize import plural, size
from cli.models import SnapshotSummary
from cli.output import columns, painter, print_error, print_json, print_line
from cli.restore import Outcome
from cli.snapshot_open import SHORT_ID
from common.clock import human_time, iso

SNAPSHOT_COLUMNS = ("SNAPSHOT", "TAKEN", "FILES", "SIZE", "CHUNKS", "STORED")


def snapshot_json(s: SnapshotSummary) -> dict[str, Any]:
    """One `images snapshots --json` row."""
    return {
        "snapshot_id": s.snapshot_id,
        "kind": s.kind,
        "created_at": iso(s.created_at),
        "committed_at": iso(s.committed_at),
        "files": s.entries,
        "size": s.size,
        "chunks": s.chunks,
        "stored_bytes": s.stored_bytes,
        "data_key_id": s.data_key_id,
    }


def snapshots_text(rows: list[SnapshotSummary]) -> str:
    rows_text = [
        [
            (s.snapshot_id[:SHORT_ID], ""),
            (human_time(s.created_at) if s.created_at else "unknown", ""),
            (str(s.entries), ""),
            (size(s.size), ""),
            (str(s.chunks), ""),
            (size(s.stored_bytes), ""),
        ]
        for s in rows
    ]
    return columns(SNAPSHOT_COLUMNS, rows_text, painter())


def print_snapshots(rows: list[SnapshotSummary], site: str, *, as_json: bool) -> None:
    if as_json:
        print_json([snapshot_json(s) for s in rows])
    elif rows:
        print_line(snapshots_text(rows))
    else:
        print_line(f"Site {site} has no image snapshot in the off-site store yet.")


def outcome_json(o: Outcome, folder: str) -> dict[str, Any]:
    """`images restore --json`."""
    return {
        "snapshot_id": o.snapshot.snapshot_id,
        "created_at": iso(o.snapshot.created_at),
        "folder": folder,
        "files": o.selected,
        "restored": o.restored,
        "skipped": o.skipped,
        "failed": len(o.failures),
        "bytes_written": o.bytes_written,
        "bytes_fetched": o.bytes_fetched,
        "failures": o.failures,
    }


def print_outcome(o: Outcome, folder: str, *, as_json: bool) -> None:
    """The failures on stderr, one sentence each, then the summary (or the JSON)."""
    if as_json:
        print_json(outcome_json(o, folder))
        return
    for failure in o.failures:
        print_error(failure)
    taken = iso(o.snapshot.created_at) or "an unknown time"
    print_line(
        f"Snapshot {o.snapshot.snapshot_id[:SHORT_ID]} (taken {taken}) to {folder}: "
        f"{plural(o.restored, 'file')} restored ({size(o.bytes_written)}), "
        f"{o.skipped} already there and checked, {len(o.failures)} not restored."
    )
