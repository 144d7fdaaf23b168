"""Rendering of `storesafe restore` and `drill`: what a restore fetched, checked and found.

Same rules as `cli.output`: JSON field names are a contract, ISO 8601 UTC times
with a trailing Z, `null` for unknown; failures go to stderr as one sentence
(the command raises them after printing the outcome).
"""

from __future__ import annotations

from typing import Any

from cli.drill import Restore
from cli.humanize import plural, seconds_text, size
from cli.output import columns, painter, print_json, print_line, print_warning
from cli.snapshot_open import SHORT_ID
from common.clock import iso

DRILL_COLUMNS = ("SITE", "RESULT", "BACKUP RUN", "SIZE", "TABLES", "ROWS", "TOOK", "PROBLEM")


def restore_json(r: Restore) -> dict[str, Any]:
    """`restore --json`, and one row of `drill --json`."""
    plan, fetched, db = r.plan, r.fetched, r.database
    server_checked = None
    if fetched is not None:
        server_checked = fetched.checked_against_server
    return {
        "site": r.site,
        "ok": r.ok,
        "error": r.error.message if r.error else None,
        "started_at": iso(r.started_at),
        "finished_at": iso(r.finished_at),
        "snapshot_id": plan.snapshot.snapshot_id if plan else None,
        "backup_run_id": r.run_id or None,
        "method": plan.method if plan else None,
        "files": [str(p) for p in fetched.paths] if fetched else [],
        "backup_bytes": plan.info.size if plan else None,
        "bytes_fetched": fetched.bytes_fetched if fetched else 0,
        "bytes_written": fetched.bytes_written if fetched else 0,
        "bytes_resumed": fetched.bytes_resumed if fetched else 0,
        "fetch_seconds": fetched.seconds if fetched else None,
        "checksum_ok": r.checksum_ok,
        "checked_against_backup_time_checksum": server_checked,
        "database": None
        if db is None
        else {
            "path": str(db.database),
            "restored": db.restored,
            "validation_errors": db.validation_errors,
            "validation_warnings": db.validation_warnings,
            "table_counts": db.table_counts,
            "tables": len(db.table_counts),
            "rows": sum(db.table_counts.values()),
            "seconds": db.seconds,
        },
        "drill_recorded": r.recorded if r.target_database is not None else None,
        "record_error": r.record_error.message if r.record_error else None,
    }


def restore_lines(r: Restore) -> list[str]:
    """What a restore did, in sentences."""
    plan, fetched, db = r.plan, r.fetched, r.database
    lines: list[str] = []
    if plan is not None and fetched is not None:
        where = ", ".join(str(p) for p in fetched.paths)
        lines.append(
            f"Backup run {plan.info.run_id} of {r.site} ({plan.method}, snapshot "
            f"{plan.snapshot.snapshot_id[:SHORT_ID]}) restored to {where}: "
            f"{size(plan.info.size)}, every chunk checked."
        )
        if fetched.checked_against_server:
            lines.append("Its sha256 matches the checksum the server recorded at backup time.")
        else:
            lines.append(
                "Its sha256 was checked against the snapshot's own record only: the server "
                "holds no raw checksum recorded at backup time for this backup."
            )
        if fetched.bytes_resumed:
            lines.append(f"Resumed: {size(fetched.bytes_resumed)} were already there.")
        if db is None and plan.method == "gbak":
            lines.append(f"Stock gbak restores it too: gbak -c {fetched.paths[0]} NEW.fdb")
    if db is not None and db.restored:
        tables, rows = len(db.table_counts), sum(db.table_counts.values())
        verdict = (
            f"validation found {plural(db.validation_errors, 'error')}"
            if db.validation_errors
            else "validation clean"
            + (f" ({plural(db.validation_warnings, 'warning')})" if db.validation_warnings else "")
        )
        lines.append(
            f"Database {db.database}: restored, {verdict}, {plural(tables, 'table')}, "
            f"{plural(rows, 'row')}, in {seconds_text(db.seconds)}."
        )
    if r.recorded:
        outcome = "passed" if r.error is None else "failed"
        lines.append(f"Drill recorded on the server ({outcome}).")
    return lines


def print_restore(r: Restore, *, as_json: bool) -> None:
    """The outcome on stdout; a drill the server did not take is warned about on stderr."""
    if as_json:
        print_json(restore_json(r))
        return
    for line in restore_lines(r):
        print_line(line)
    if r.record_error is not None and r.error is not None:
        print_warning(f"the drill was not recorded: {r.record_error.message}")


def drill_rows(results: list[Restore]) -> str:
    rows = []
    for r in results:
        db, plan = r.database, r.plan
        took = (
            seconds_text((r.finished_at - r.started_at).total_seconds()) if r.finished_at else "-"
        )
        problem = r.error.message if r.error else (r.record_error.message if r.record_error else "")
        rows.append(
            [
                (r.site, "bold"),
                ("passed", "green") if r.ok else ("failed", "bold red"),
                (r.run_id or "-", ""),
                (size(plan.info.size) if plan else "-", ""),
                (str(len(db.table_counts)) if db and db.restored else "-", ""),
                (str(sum(db.table_counts.values())) if db and db.restored else "-", ""),
                (took, ""),
                (problem, ""),
            ]
        )
    return columns(DRILL_COLUMNS, rows, painter())


def print_drills(results: list[Restore], *, as_json: bool) -> None:
    """The table of drills (or JSON), then the tally."""
    if as_json:
        print_json([restore_json(r) for r in results])
        return
    if not results:
        print_line("No site has a database copy in the off-site store: nothing to drill.")
        return
    passed = sum(r.ok for r in results)
    print_line(drill_rows(results))
    print_line(
        f"\n{plural(len(results), 'drill')}: {passed} passed, {len(results) - passed} failed."
    )
