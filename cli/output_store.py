"""Rendering of `storesafe verify-store`: per site what was checked and what is broken.

Same rules as `cli.output`: JSON field names are a contract; text names every
damaged or missing chunk the server reported, and what it breaks.
"""

from __future__ import annotations

from typing import Any

from cli.humanize import plural, size
from cli.models import StoreCheckUpdate
from cli.output import columns, painter, print_json, print_line

STORE_COLUMNS = ("SITE", "RESULT", "CHUNKS", "BYTES", "SAMPLE", "DAMAGED", "MISSING")


def _details(u: StoreCheckUpdate) -> dict[str, Any]:
    return u.result.details if u.result is not None else {}


def damaged(u: StoreCheckUpdate) -> bool:
    """Whether the site's check found a damaged or missing chunk (or did not finish)."""
    d = _details(u)
    failed = u.result is not None and u.result.outcome == "failed"
    return failed or bool(d.get("damaged_count", 0) or d.get("missing_count", 0))


def result_json(u: StoreCheckUpdate) -> dict[str, Any]:
    """One `verify-store --json` row."""
    d, run = _details(u), u.result
    return {
        "site": u.site,
        "damaged": damaged(u),
        "run_id": run.id if run else None,
        "outcome": run.outcome if run else None,
        "error": (run.error_message or None) if run else None,
        "sample_percent": d.get("sample_percent"),
        "chunks_checked": d.get("chunks_checked", u.chunks_checked),
        "bytes_checked": d.get("bytes_checked", u.bytes_checked),
        "damaged_count": d.get("damaged_count", 0),
        "missing_count": d.get("missing_count", 0),
        "damaged_chunks": d.get("damaged_chunks", []),
        "missing_chunks": d.get("missing_chunks", []),
        "broken_snapshots": d.get("broken_snapshots", []),
        "broken_backup_runs": d.get("broken_backup_runs", []),
    }


def _problems(row: dict[str, Any]) -> list[str]:
    lines = [f"{row['site']}: damaged chunk {c}" for c in row["damaged_chunks"]]
    lines += [f"{row['site']}: missing chunk {c}" for c in row["missing_chunks"]]
    listed = len(row["damaged_chunks"]) + len(row["missing_chunks"])
    total = row["damaged_count"] + row["missing_count"]
    if total > listed:
        lines.append(f"{row['site']}: {total - listed} more not listed")
    if row["broken_snapshots"] or row["broken_backup_runs"]:
        lines.append(
            f"{row['site']}: it breaks {plural(len(row['broken_snapshots']), 'snapshot')} "
            f"({', '.join(s[:12] for s in row['broken_snapshots']) or '-'}) and "
            f"{plural(len(row['broken_backup_runs']), 'backup run')} "
            f"({', '.join(row['broken_backup_runs']) or '-'})"
        )
    if row["error"]:
        lines.append(f"{row['site']}: {row['error']}")
    return lines


def print_results(results: list[StoreCheckUpdate], *, as_json: bool, site: str) -> None:
    """A row per site, then every damaged or missing chunk and what it breaks."""
    rows = [result_json(u) for u in results]
    if as_json:
        print_json(rows)
        return
    if not rows:
        where = f"site {site}" if site else "the off-site store"
        print_line(f"No stored chunks of {where} to check: nothing was checked.")
        return
    table = [
        [
            (r["site"], "bold"),
            ("DAMAGED", "bold red") if r["damaged"] else ("clean", "green"),
            (str(r["chunks_checked"]), ""),
            (size(int(r["bytes_checked"] or 0)), ""),
            (f"{r['sample_percent']:g}%" if r["sample_percent"] is not None else "-", ""),
            (str(r["damaged_count"]), "red" if r["damaged_count"] else ""),
            (str(r["missing_count"]), "red" if r["missing_count"] else ""),
        ]
        for r in rows
    ]
    print_line(columns(STORE_COLUMNS, table, painter()))
    problems = [line for r in rows for line in _problems(r)]
    if problems:
        print_line("")
        for line in problems:
            print_line(line)
    bad = sum(r["damaged"] for r in rows)
    print_line(f"\n{plural(len(rows), 'site')} checked: {len(rows) - bad} clean, {bad} damaged.")
