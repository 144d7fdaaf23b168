"""How values read for people: ages like "3h ago", timestamps, counts, sizes, durations, runs.

Pure functions of their arguments (the current time is passed in), used by
`cli.output` for the text views.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cli.models import Run
from common.clock import human_time


def ago(when: dt.datetime | None, now: dt.datetime) -> str:
    """`never`, `just now`, `5m ago`, `3h ago`, `2d ago` (or `in 5m` for the future)."""
    if when is None:
        return "never"
    seconds = int((now - when).total_seconds())
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 60:
        return "just now"
    step, unit = next((s, u) for s, u in ((86400, "d"), (3600, "h"), (60, "m")) if seconds >= s)
    amount = f"{seconds // step}{unit}"
    return f"in {amount}" if future else f"{amount} ago"


def timestamp(when: dt.datetime | None, now: dt.datetime) -> str:
    """`2026-11-26 19:04 UTC (3h ago)`, or `never`."""
    if when is None:
        return "never"
    return f"{human_time(when)} ({ago(when, now)})"


def plural(count: int, noun: str, nouns: str = "") -> str:
    """`1 site`, `3 sites` (`nouns` for an irregular plural)."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def size(count: int) -> str:
    """Bytes as `512 B`, `1.5 KiB`, `3.2 GiB`."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def seconds_text(seconds: float) -> str:
    """A duration such as `0.4s`, `42s`, `3m12s`, `1h05m`."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def run_summary(run: Run) -> str:
    """One line of what the run did, and why it failed when it did."""
    d = run.details
    parts: list[str] = []
    if run.kind == "backup" and d:
        parts.append(
            f"{d.get('method') or 'backup'} {size(d.get('size_compressed', 0))} "
            f"{d.get('file', '')}".strip()
        )
        parts.append(d.get("verification_message", ""))
        parts.extend(d.get("problems", []))
    elif run.kind == "image-sync" and d:
        parts.append(
            f"{d.get('files_copied', 0)} of {d.get('files_scanned', 0)} files copied "
            f"({size(d.get('bytes_copied', 0))}), {d.get('files_failed', 0)} failed"
        )
        parts.append(str(d.get("summary", "")))
    elif run.kind == "upload" and d:
        parts.append(_upload(d))
    elif run.kind == "drill" and d:
        parts.append(_drill(d))
    elif run.kind == "store-check" and d:
        parts.append(_store_check(d))
    elif run.kind == "validation" and d:
        parts.append(f"{d.get('errors', 0)} errors, {d.get('warnings', 0)} warnings")
    elif run.kind == "file-check" and d and not run.error_message:
        parts.append(str(d.get("summary", "")))
    if run.error_message:
        cls = f" [{run.error_class}]" if run.error_class else ""
        parts.append(run.error_message + cls)
    return "; ".join(p for p in parts if p)


def _upload(d: dict[str, Any]) -> str:
    """`backup run R: 1.2 MiB sent of a 40 MiB backup (300 chunks sent, 9,700 there)`."""
    run = d.get("backup_run_id") or ""
    text = f"backup run {run}: " if run else f"{d.get('file', '')} "
    text += f"{size(d.get('bytes_sent', 0))} sent of a {size(d.get('backup_size', 0))} backup"
    text += f" ({d.get('chunks_sent', 0)} chunks sent, {d.get('chunks_present', 0)} there)"
    if not d.get("complete", True):
        text += f", paused: {d.get('paused_reason') or 'not finished'}"
    return text


def _drill(d: dict[str, Any]) -> str:
    """`backup run R restored: checksum ok, validation clean, 5 tables, 1,234 rows`."""
    counts = d.get("table_counts") or {}
    steps = [
        "checksum ok" if d.get("checksum_ok") else "checksum not proven",
        "restored" if d.get("restored") else "not restored",
    ]
    if d.get("restored"):
        errors = int(d.get("validation_errors", 0))
        steps.append(f"validation {plural(errors, 'error')}" if errors else "validation clean")
        steps.append(f"{plural(len(counts), 'table')}, {plural(sum(counts.values()), 'row')}")
    run = d.get("backup_run_id") or "?"
    return f"backup run {run} ({size(d.get('backup_bytes', 0))}): " + ", ".join(steps)


def _store_check(d: dict[str, Any]) -> str:
    """`1,000 chunks (12 MiB, 10%) checked: 2 damaged, 1 missing; breaks 3 snapshots, ...`."""
    text = (
        f"{plural(int(d.get('chunks_checked', 0)), 'chunk')} "
        f"({size(d.get('bytes_checked', 0))}, {d.get('sample_percent', 100):g}%) checked"
    )
    damaged, missing = int(d.get("damaged_count", 0)), int(d.get("missing_count", 0))
    if not damaged and not missing:
        return text + ": clean"
    text += f": {damaged} damaged, {missing} missing"
    snaps, runs = d.get("broken_snapshots") or [], d.get("broken_backup_runs") or []
    text += f"; breaks {plural(len(snaps), 'snapshot')} and {plural(len(runs), 'backup run')}"
    if runs:
        text += f" ({', '.join(runs[:3])}{' ...' if len(runs) > 3 else ''})"
    return text
