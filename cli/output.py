"""All admin CLI rendering: rich tables for technicians and stable `--json` for scripts.

JSON uses the field names below (a contract: add fields, never rename), ISO 8601
UTC times with a trailing Z, and `null` for never. Text output shows times as
"3h ago" / "never" and colours each status.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli.humanize import ago, run_summary, seconds_text, size, timestamp
from cli.models import AuditEntry, CheckResult, EnrollmentToken, Run, SiteDetail, SiteSummary
from common.clock import iso

SITE_COLUMNS = ("SITE", "GROUP", "STATUS", "VERIFIED", "SEEN", "IMAGES", "REV", "PROBLEMS")
STATUS_STYLES = {
    "ok": "green",
    "warning": "yellow",
    "stale": "red",
    "failing": "bold red",
    "never": "magenta",
    "offline": "red",
}


def console() -> Console:
    """A console on the current stdout, made per use (tests swap stdout).

    Piped output gets a wide line ($COLUMNS, else 160) so rows stay whole for grep.
    """
    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS") or 160)
    return Console(width=width, highlight=False, soft_wrap=False)


def print_json(value: Any) -> None:
    """Write `value` as indented JSON on stdout."""
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def print_error(message: str) -> None:
    """Write `error: <message>` on stderr, one line, no markup."""
    sys.stderr.write(f"error: {message}\n")


def print_line(message: str) -> None:
    """Write one plain line on stdout."""
    sys.stdout.write(message + "\n")


# --- cells ------------------------------------------------------------------


def status_text(status: str) -> Text:
    """The status word in its colour."""
    return Text(status, style=STATUS_STYLES.get(status, "dim"))


def config_text(site: SiteSummary) -> Text:
    """`3` when the agent runs the desired revision, `2 → 3` (yellow) while it lags."""
    if site.config_revision_desired == site.config_revision_applied:
        return Text(str(site.config_revision_applied or "-"))
    return Text(f"{site.config_revision_applied} → {site.config_revision_desired}", style="yellow")


def _table(*headers: str, **options: Any) -> Table:
    """A plain-ruled table; every column keeps to one line except the last, which takes the rest."""
    result = Table(box=box.SIMPLE_HEAD, **options)
    for header in headers[:-1]:
        result.add_column(header, no_wrap=True)
    result.add_column(headers[-1], ratio=1)
    return result


def _counts(sites: list[SiteSummary]) -> str:
    """`3 sites: 2 ok, 1 never`."""
    tally: dict[str, int] = {}
    for site in sites:
        tally[site.status] = tally.get(site.status, 0) + 1
    noun = "site" if len(sites) == 1 else "sites"
    return f"{len(sites)} {noun}: " + ", ".join(f"{n} {status}" for status, n in tally.items())


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
    }


def site_detail_json(detail: SiteDetail) -> dict[str, Any]:
    """The `site --json` object: the summary row plus the agent's last report."""
    fb = detail.firebird
    return {
        **site_json(detail.summary),
        "os": detail.os,
        "enrolled_at": iso(detail.enrolled_at),
        "active_agents": detail.active_agents,
        "clock_skew_seconds": detail.clock_skew_seconds,
        "outbox_pending": detail.outbox_pending,
        "disks": [
            {
                "label": d.label,
                "path": d.path,
                "total_bytes": d.total_bytes,
                "free_bytes": d.free_bytes,
            }
            for d in detail.disks
        ],
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


# --- text views ------------------------------------------------------------


def sites_table(sites: list[SiteSummary], now: dt.datetime) -> Table:
    """The fleet table: one row per site, problems joined."""
    caption = _counts(sites)
    table = _table(*SITE_COLUMNS, caption=caption, caption_justify="left")
    for s in sites:
        table.add_row(
            Text(s.site, style="bold"),
            Text(s.group),
            status_text(s.status),
            Text(ago(s.last_good_backup_at, now)),
            Text(ago(s.last_seen_at, now)),
            Text(ago(s.last_image_sync_at, now)),
            config_text(s),
            Text("; ".join(s.problems)),
        )
    return table


def print_sites(sites: list[SiteSummary], now: dt.datetime, *, filtered: bool) -> None:
    """Show the fleet, or say plainly that there is nothing to show."""
    if sites:
        console().print(sites_table(sites, now))
    elif filtered:
        print_line("No sites match this filter.")
    else:
        print_line(
            "No sites yet: create an enrollment token with 'storesafe token create --site SITE'."
        )


def site_view(detail: SiteDetail, now: dt.datetime) -> list[Table]:
    """The `site` view: key facts, then disks and Firebird health when known."""
    s = detail.summary
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    last = detail.last_backup
    rows: list[tuple[str, Text]] = [
        ("Site", Text(s.site)),
        ("Group", Text(s.group)),
        ("Status", status_text(s.status)),
        ("Problems", Text("\n".join(s.problems) or "none")),
        ("Last good backup", Text(timestamp(s.last_good_backup_at, now))),
        ("Last backup", Text(timestamp(s.last_backup_at, now))),
        ("Last backup result", run_result(last) if last else Text("none")),
        ("Last image sync", Text(timestamp(s.last_image_sync_at, now))),
        ("Last seen", Text(timestamp(s.last_seen_at, now))),
        ("Hostname", Text(s.hostname or "-")),
        ("OS", Text(detail.os or "-")),
        ("Agent version", Text(s.agent_version or "-")),
        ("Active agents", Text(str(detail.active_agents))),
        ("Enrolled", Text(timestamp(detail.enrolled_at, now))),
        ("Config revision", config_text(s)),
        ("Clock skew", Text(f"{round(detail.clock_skew_seconds, 1) + 0.0:+.1f}s")),
        ("Outbox pending", Text(str(detail.outbox_pending))),
    ]
    for key, value in rows:
        facts.add_row(key, value)
    views = [facts]
    if detail.disks:
        disks = _table(
            "DISK", "FREE", "TOTAL", "FREE %", "PATH", title="Disks", title_justify="left"
        )
        for d in detail.disks:
            share = 100 * d.free_bytes / d.total_bytes if d.total_bytes else 0.0
            low = "red" if share < 10 else ""
            disks.add_row(
                d.label,
                size(d.free_bytes),
                size(d.total_bytes),
                Text(f"{share:.0f}%", style=low),
                Text(d.path),
            )
        views.append(disks)
    if detail.firebird is not None:
        fb = detail.firebird
        health = Table.grid(padding=(0, 2))
        health.title, health.title_justify = "Firebird", "left"
        for key, text in (
            ("Server", fb.server_version or "-"),
            ("ODS", fb.ods or "-"),
            ("Size", size(fb.size_bytes)),
            ("Page size", str(fb.page_size)),
            ("Forced writes", "on" if fb.forced_writes else "off"),
            ("OIT / OAT / OST / next", f"{fb.oit} / {fb.oat} / {fb.ost} / {fb.next_transaction}"),
            ("Gap (OAT - OIT)", str(fb.oat - fb.oit)),
            ("Sweep interval", str(fb.sweep_interval)),
            ("Backup state", {0: "normal", 1: "stalled", 2: "merge"}.get(fb.backup_state, "?")),
        ):
            health.add_row(Text(key, style="bold"), Text(text))
        views.append(health)
    return views


def print_site(detail: SiteDetail, now: dt.datetime) -> None:
    """Show one site in detail."""
    out = console()
    for view in site_view(detail, now):
        out.print(view)
        out.print()


def run_result(run: Run) -> Text:
    """`verified`, `verify failed`, `unverified`, `succeeded` or `failed`, coloured."""
    if run.outcome == "failed":
        return Text("failed", style="bold red")
    if run.kind == "backup":
        verification = run.details.get("verification")
        if verification == "passed":
            return Text("verified", style="green")
        if verification == "failed":
            return Text("verify failed", style="bold red")
        return Text("unverified", style="yellow")
    if run.outcome == "succeeded":
        return Text("succeeded", style="green")
    return Text(run.outcome, style="dim")


def runs_table(runs: list[Run], now: dt.datetime) -> Table:
    """Recent runs, newest first."""
    table = _table("FINISHED", "KIND", "RESULT", "TOOK", "TRIGGER", "DETAILS")
    for run in runs:
        took = "-"
        if run.started_at and run.finished_at:
            took = seconds_text((run.finished_at - run.started_at).total_seconds())
        table.add_row(
            Text(ago(run.finished_at, now)),
            Text(run.kind),
            run_result(run),
            Text(took),
            Text(run.trigger or "-"),
            Text(run_summary(run)),
        )
    return table


def print_runs(runs: list[Run], site: str, now: dt.datetime) -> None:
    """Show runs, or say there are none."""
    if runs:
        console().print(runs_table(runs, now))
    else:
        print_line(f"No runs reported for site {site} yet.")


def print_audit(entries: list[AuditEntry], now: dt.datetime) -> None:
    """Show the audit log, newest first."""
    if not entries:
        print_line("No admin actions recorded yet.")
        return
    table = _table("WHEN", "ACTOR", "ACTION", "TARGET", "DETAILS")
    for e in entries:
        table.add_row(
            Text(timestamp(e.at, now)),
            Text(e.actor),
            Text(e.action),
            Text(e.target),
            Text(e.details),
        )
    console().print(table)


def print_token(token: EnrollmentToken, lifetime: str, server: str, ca: Path | None) -> None:
    """Show a new enrollment token with the command that uses it."""
    until = f"{token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else "unknown"
    group = f" (group {token.group})" if token.group else ""
    ca_option = f" --ca {ca.name}" if ca else ""
    print_line(
        f"Enrollment token for site {token.site}{group}, valid for {lifetime} "
        f"(until {until}), usable once:\n\n    {token.token}\n\n"
        "On the shop PC, enroll the agent with:\n"
        f"    storesafe-agent enroll --server {server} --site {token.site} "
        f"--token {token.token}{ca_option}"
    )


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


def print_check(result: CheckResult, *, as_json: bool) -> None:
    """The plugin's one line on stdout (monitoring systems read stdout), or JSON."""
    if as_json:
        print_json(check_json(result))
    else:
        print_line(result.summary)


def print_revoked(site: str, count: int) -> None:
    """Say what `revoke` did."""
    if count:
        print_line(
            f"Revoked {count} agent credential(s) of site {site}; "
            "its agents must enroll again with a new token."
        )
    else:
        print_line(f"Site {site} had no active agent credentials.")
