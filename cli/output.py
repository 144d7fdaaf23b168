"""All admin CLI rendering: aligned, coloured text for technicians and `--json` for scripts.

JSON uses the field names below (a contract: add fields, never rename), ISO 8601
UTC times with a trailing Z, and `null` for never. Text shows times as "3h ago"
or "never", one line per row (greppable), status in colour on a terminal.
Tables are laid out here rather than by rich's Table, which needs seconds for
10,000 rows; rich only decides whether and how to colour.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.console import COLOR_SYSTEMS, Console
from rich.style import Style

from cli.humanize import ago, plural, run_summary, seconds_text, size, timestamp
from cli.models import AuditEntry, CheckResult, EnrollmentToken, Run, SiteDetail, SiteSummary
from common.clock import human_time, iso

Cell = tuple[str, str]
"""A table cell: its text and a rich style ("" for none)."""
Paint = Callable[[str, str], str]
"""Renders text in a style: ANSI codes on a colour terminal, else the text as is."""

SITE_COLUMNS = (
    "SITE",
    "GROUP",
    "STATUS",
    "VERIFIED",
    "SEEN",
    "IMAGES",
    "OFFSITE",
    "PROVEN",
    "REV",
    "PROBLEMS",
)
RUN_COLUMNS = ("FINISHED", "KIND", "RESULT", "FILE", "TOOK", "TRIGGER", "DETAILS")
FILE_STATE_STYLES = {"kept": "", "pruned": "dim", "damaged": "bold red", "missing": "bold red"}
AUDIT_COLUMNS = ("WHEN", "ACTOR", "ACTION", "TARGET", "DETAILS")
DISK_COLUMNS = ("DISK", "FREE", "TOTAL", "FREE %", "PATH")
STATUS_STYLES = {
    "ok": "green",
    "warning": "yellow",
    "stale": "red",
    "failing": "bold red",
    "never": "magenta",
    "offline": "red",
}

# Control characters (ESC included) from agent-reported text must not reach the terminal.
_CONTROL = {code: " " for code in [*range(32), *range(127, 160)]}


def print_json(value: Any) -> None:
    """Write `value` as indented JSON on stdout: always valid JSON, whatever the server
    stored (a NaN or infinite number, which JSON cannot hold, is written as null)."""
    sys.stdout.write(json.dumps(finite(value), indent=2, allow_nan=False) + "\n")


def finite(value: Any) -> Any:
    """`value` with every float that is not finite replaced by None (through dicts,
    lists and tuples)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def print_error(message: str) -> None:
    """Write `error: <message>` on stderr, one line."""
    sys.stderr.write(f"error: {clean(message)}\n")


def print_warning(message: str) -> None:
    """Write `warning: <message>` on stderr, one line (the command still succeeds)."""
    sys.stderr.write(f"warning: {clean(message)}\n")


def print_line(message: str) -> None:
    """Write plain text and a newline on stdout."""
    sys.stdout.write(message + "\n")


def clean(text: str) -> str:
    """`text` on one line with control characters (terminal escapes) blanked."""
    return text.translate(_CONTROL)


def painter() -> Paint:
    """A function that wraps text in ANSI codes for a style, or leaves it plain when stdout
    is not a colour terminal (piped, NO_COLOR, legacy Windows console)."""
    out = Console(highlight=False)
    system = COLOR_SYSTEMS.get(out.color_system or "")
    if system is None or out.no_color or out.legacy_windows:
        return lambda text, style: text
    return lambda text, style: (
        Style.parse(style).render(text, color_system=system) if style else text
    )


def columns(headers: Sequence[str] | None, rows: Sequence[Sequence[Cell]], paint: Paint) -> str:
    """Rows aligned in columns under bold headers; the last column runs on unpadded."""
    lines = [[(h, "bold") for h in headers]] if headers else []
    lines += [[(clean(text), style) for text, style in row] for row in rows]
    if not lines:
        return ""
    widths = [max(cell_len(line[i][0]) for line in lines) for i in range(len(lines[0]))]
    rendered = []
    for line in lines:
        parts = [
            paint(text, style) + " " * (widths[i] - cell_len(text) + 3)
            for i, (text, style) in enumerate(line[:-1])
        ]
        parts.append(paint(*line[-1]))
        rendered.append("".join(parts).rstrip())
    return "\n".join(rendered)


# --- cells ------------------------------------------------------------------


def status_cell(status: str) -> Cell:
    """The status word in its colour."""
    return status, STATUS_STYLES.get(status, "dim")


def config_cell(site: SiteSummary) -> Cell:
    """`3` when the agent runs the desired revision, `2 → 3` (yellow) while it lags."""
    if site.config_revision_desired == site.config_revision_applied:
        return str(site.config_revision_applied or "-"), ""
    return f"{site.config_revision_applied} → {site.config_revision_desired}", "yellow"


def proven_cell(site: SiteSummary, now: dt.datetime) -> Cell:
    """When the site was last proven restorable from off site; red when the newest drill failed."""
    text = ago(site.last_drill_ok_at, now)
    if site.last_drill_outcome == "failed":
        return text, "bold red"
    return text, ""


def offsite_text(site: SiteSummary, now: dt.datetime) -> str:
    """`2026-11-26 19:04 UTC (3h ago), backup run R: 1.2 MiB sent of a 40 MiB backup`."""
    if site.last_offsite_at is None:
        return "never"
    text = timestamp(site.last_offsite_at, now)
    if site.last_offsite_backup_run_id:
        text += f", backup run {site.last_offsite_backup_run_id}"
    if site.last_offsite_backup_size or site.last_offsite_bytes_sent:
        text += (
            f": {size(site.last_offsite_bytes_sent)} sent of a "
            f"{size(site.last_offsite_backup_size)} backup"
        )
    return text


def drill_text(site: SiteSummary, now: dt.datetime) -> str:
    """When the site was last proven restorable, and a newer drill that failed."""
    text = timestamp(site.last_drill_ok_at, now)
    if site.last_drill_outcome == "failed" and site.last_drill_at is not None:
        text += f"; the newest drill failed {ago(site.last_drill_at, now)}"
    return text


def store_check_text(site: SiteSummary, now: dt.datetime) -> str:
    """`2026-11-26 19:04 UTC (3h ago): clean` or `...: 3 chunks damaged or missing`."""
    if site.last_store_check_at is None:
        return "never"
    found = (
        f"{plural(site.store_damaged_chunks, 'chunk')} damaged or missing"
        if site.store_damaged_chunks
        else "clean"
    )
    return f"{timestamp(site.last_store_check_at, now)}: {found}"


def run_result(run: Run) -> Cell:
    """`verified`, `verify failed`, `unverified`, `incomplete` (an image sync cut short),
    `succeeded` or `failed`, coloured."""
    if run.outcome == "failed":
        return "failed", "bold red"
    if run.kind == "image-sync" and run.details.get("incomplete"):
        return "incomplete", "yellow"
    if run.kind == "backup":
        verification = run.details.get("verification")
        if verification == "passed":
            return "verified", "green"
        if verification == "failed":
            return "verify failed", "bold red"
        return "unverified", "yellow"
    return run.outcome, "green" if run.outcome == "succeeded" else "dim"


def _pairs(pairs: Sequence[tuple[str, Cell]], paint: Paint) -> str:
    """`Key   value` lines with the keys in bold and the values aligned."""
    return columns(None, [[(key, "bold"), value] for key, value in pairs], paint)


def _counts(sites: list[SiteSummary]) -> str:
    """`3 sites: 2 ok, 1 never`."""
    tally: dict[str, int] = {}
    for site in sites:
        tally[site.status] = tally.get(site.status, 0) + 1
    return f"{plural(len(sites), 'site')}: " + ", ".join(f"{n} {s}" for s, n in tally.items())


# --- JSON rows (the contract) ---------------------------------------------


def site_json(site: SiteSummary) -> dict[str, Any]:
    """One `sites --json` row."""
    return {
        "site": site.site,
        "group": site.group,
        "status": site.status,
        "last_good_backup_at": iso(site.last_good_backup_at),
        "last_backup_at": iso(site.last_backup_at),
        "last_image_sync_at": iso(site.last_image_sync_at),
        "last_seen_at": iso(site.last_seen_at),
        "config_revision_desired": site.config_revision_desired,
        "config_revision_applied": site.config_revision_applied,
        "agent_version": site.agent_version,
        "problems": list(site.problems),
        "hostname": site.hostname,
        "last_offsite_at": iso(site.last_offsite_at),
        "last_offsite_backup_run_id": site.last_offsite_backup_run_id or None,
        "last_offsite_bytes_sent": site.last_offsite_bytes_sent,
        "last_offsite_backup_size": site.last_offsite_backup_size,
        "last_drill_ok_at": iso(site.last_drill_ok_at),
        "last_drill_at": iso(site.last_drill_at),
        "last_drill_outcome": site.last_drill_outcome or None,
        "last_store_check_at": iso(site.last_store_check_at),
        "store_damaged_chunks": site.store_damaged_chunks,
    }


def run_json(run: Run) -> dict[str, Any]:
    """One `runs --json` row."""
    duration = None
    if run.started_at and run.finished_at:
        duration = (run.finished_at - run.started_at).total_seconds()
    return {
        "id": run.id,
        "site": run.site,
        "kind": run.kind,
        "outcome": run.outcome,
        "trigger": run.trigger,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "received_at": iso(run.received_at),
        "duration_seconds": duration,
        "error_class": run.error_class,
        "error_message": run.error_message,
        "details": run.details,
        "file_state": run.file_state,
    }


def site_detail_json(detail: SiteDetail) -> dict[str, Any]:
    """The `site --json` object: the summary row plus the agent's last report."""
    fb = detail.firebird
    disks = [
        {"label": d.label, "path": d.path, "total_bytes": d.total_bytes, "free_bytes": d.free_bytes}
        for d in detail.disks
    ]
    return {
        **site_json(detail.summary),
        "os": detail.os,
        "enrolled_at": iso(detail.enrolled_at),
        "active_agents": detail.active_agents,
        "clock_skew_seconds": (
            None if detail.summary.last_seen_at is None else detail.clock_skew_seconds
        ),
        "outbox_pending": detail.outbox_pending,
        "disks": disks,
        "firebird": None if fb is None else {k: getattr(fb, k) for k in fb.__slots__},
        "last_backup": None if detail.last_backup is None else run_json(detail.last_backup),
    }


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    """One `audit --json` row."""
    return {
        "at": iso(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "details": entry.details,
    }


def token_json(token: EnrollmentToken) -> dict[str, Any]:
    """The `token create --json` object."""
    return {"token": token.token, "expires_at": iso(token.expires_at), "site": token.site}


def check_json(result: CheckResult) -> dict[str, Any]:
    """The `check --json` object."""
    return {
        "state": result.state.lower(),
        "exit_code": result.exit_code,
        "summary": result.summary,
        "counts": result.counts,
        "sites": [
            {"site": s.site, "status": s.status, "problems": list(s.problems)}
            for s in result.attention
        ],
    }


# --- text views ------------------------------------------------------------


def sites_text(sites: list[SiteSummary], now: dt.datetime, paint: Paint) -> str:
    """The fleet table, one row per site with its problems joined, then the tally."""
    rows = [
        [
            (s.site, "bold"),
            (s.group, ""),
            status_cell(s.status),
            (ago(s.last_good_backup_at, now), ""),
            (ago(s.last_seen_at, now), ""),
            (ago(s.last_image_sync_at, now), ""),
            (ago(s.last_offsite_at, now), ""),
            proven_cell(s, now),
            config_cell(s),
            ("; ".join(s.problems), ""),
        ]
        for s in sites
    ]
    return columns(SITE_COLUMNS, rows, paint) + "\n\n" + _counts(sites)


def print_sites(sites: list[SiteSummary], now: dt.datetime, *, filtered: bool) -> None:
    """Show the fleet, or say plainly that there is nothing to show."""
    if sites:
        print_line(sites_text(sites, now, painter()))
    elif filtered:
        print_line("No sites match this filter.")
    else:
        print_line(
            "No sites yet: create an enrollment token with 'storesafe token create --site SITE'."
        )


def site_text(detail: SiteDetail, now: dt.datetime, paint: Paint) -> str:
    """The `site` view: key facts, then disks and Firebird health when known."""
    s, last = detail.summary, detail.last_backup
    facts: list[tuple[str, Cell]] = [
        ("Site", (s.site, "")),
        ("Group", (s.group, "")),
        ("Status", status_cell(s.status)),
        ("Problems", ("; ".join(s.problems) or "none", "")),
        ("Last good backup", (timestamp(s.last_good_backup_at, now), "")),
        ("Last backup", (timestamp(s.last_backup_at, now), "")),
        ("Last backup result", run_result(last) if last else ("none", "")),
        ("Last backup details", (run_summary(last) if last else "-", "")),
        ("Last image sync", (timestamp(s.last_image_sync_at, now), "")),
        ("Last off-site copy", (offsite_text(s, now), "")),
        ("Proven restorable", (drill_text(s, now), proven_cell(s, now)[1])),
        ("Store check", (store_check_text(s, now), "red" if s.store_damaged_chunks else "")),
        ("Last seen", (timestamp(s.last_seen_at, now), "")),
        ("Hostname", (s.hostname or "-", "")),
        ("OS", (detail.os or "-", "")),
        ("Agent version", (s.agent_version or "-", "")),
        ("Active agents", (str(detail.active_agents), "")),
        ("Enrolled", (timestamp(detail.enrolled_at, now), "")),
        ("Config revision", config_cell(s)),
        ("Clock skew", (_skew(detail), "")),
        ("Outbox pending", (str(detail.outbox_pending), "")),
    ]
    parts = [_pairs(facts, paint)]
    if detail.disks:
        disks = []
        for d in detail.disks:
            share = 100 * d.free_bytes / d.total_bytes if d.total_bytes else 0.0
            disks.append(
                [
                    (d.label, ""),
                    (size(d.free_bytes), ""),
                    (size(d.total_bytes), ""),
                    (f"{share:.0f}%", "red" if share < 10 else ""),
                    (d.path, ""),
                ]
            )
        parts.append(columns(DISK_COLUMNS, disks, paint))
    if (fb := detail.firebird) is not None:
        state = {0: "normal", 1: "stalled", 2: "merge"}.get(fb.backup_state, "?")
        health = [
            ("Firebird", fb.server_version or "-"),
            ("ODS", fb.ods or "-"),
            ("Size", size(fb.size_bytes)),
            ("Page size", str(fb.page_size)),
            ("Forced writes", "on" if fb.forced_writes else "off"),
            ("OIT / OAT / OST / next", f"{fb.oit} / {fb.oat} / {fb.ost} / {fb.next_transaction}"),
            ("Gap (OAT - OIT)", str(fb.oat - fb.oit)),
            ("Sweep interval", str(fb.sweep_interval)),
            ("Backup state", state),
        ]
        parts.append(_pairs([(key, (value, "")) for key, value in health], paint))
    return "\n\n".join(parts)


def _skew(detail: SiteDetail) -> str:
    """`+1.5s` once the agent has checked in; nothing is known before that."""
    if detail.summary.last_seen_at is None:
        return "never seen"
    return f"{round(detail.clock_skew_seconds, 1) + 0.0:+.1f}s"


def print_site(detail: SiteDetail, now: dt.datetime) -> None:
    """Show one site in detail."""
    print_line(site_text(detail, now, painter()))


def runs_text(runs: list[Run], now: dt.datetime, paint: Paint) -> str:
    """Recent runs, newest first."""
    rows = []
    for run in runs:
        took = "-"
        if run.started_at and run.finished_at:
            took = seconds_text((run.finished_at - run.started_at).total_seconds())
        rows.append(
            [
                (ago(run.finished_at, now), ""),
                (run.kind, ""),
                run_result(run),
                (run.file_state or "-", FILE_STATE_STYLES.get(run.file_state or "", "")),
                (took, ""),
                (run.trigger or "-", ""),
                (run_summary(run), ""),
            ]
        )
    return columns(RUN_COLUMNS, rows, paint)


def print_runs(runs: list[Run], site: str, now: dt.datetime) -> None:
    """Show runs, or say there are none."""
    if runs:
        print_line(runs_text(runs, now, painter()))
    else:
        print_line(f"No runs reported for site {site} yet.")


def print_audit(entries: list[AuditEntry], now: dt.datetime) -> None:
    """Show the audit log, newest first."""
    if not entries:
        print_line("No admin actions recorded yet.")
        return
    rows = [
        [(timestamp(e.at, now), ""), (e.actor, ""), (e.action, ""), (e.target, ""), (e.details, "")]
        for e in entries
    ]
    print_line(columns(AUDIT_COLUMNS, rows, painter()))


def print_token(token: EnrollmentToken, lifetime: str, server: str, ca: Path | None) -> None:
    """Show a new enrollment token with the command that uses it."""
    until = human_time(token.expires_at) if token.expires_at else "unknown"
    group = f" (group {token.group})" if token.group else ""
    ca_option = f" --ca {ca.name}" if ca else ""
    print_line(
        f"Enrollment token for site {token.site}{group}, valid for {lifetime} "
        f"(until {until}), usable once:\n\n    {token.token}\n\n"
        "On the shop PC, enroll the agent with:\n"
        f"    storesafe-agent enroll --server {server} --site {token.site} "
        f"--token {token.token}{ca_option}"
    )


def print_check(result: CheckResult, *, as_json: bool) -> None:
    """The plugin's one line on stdout (monitoring systems read stdout), or JSON."""
    if as_json:
        print_json(check_json(result))
    else:
        print_line(clean(result.summary))


def print_revoked(site: str, count: int) -> None:
    """Say what `revoke` did."""
    if count:
        print_line(
            f"Revoked {plural(count, 'agent credential')} of site {site}; "
            "its agents must enroll again with a new token."
        )
    else:
        print_line(f"Site {site} had no active agent credentials.")
