"""Rendering of configuration and remote commands: `config ...`, `backup-now`, `commands`.

Split from `cli.output` (same rules: JSON field names are a contract, ISO 8601
UTC times with a trailing Z, `null` for never and for "no refusal"; text one
line per row). Secret values come masked from the server; they are masked here
again all the same, so that no change on the server can ever print one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cli.humanize import ago, timestamp
from cli.models import Command, ConfigChange, ConfigRevision, RolloutRow, SiteConfig
from cli.output import Cell, Paint, columns, painter, print_json, print_line, print_warning
from common.clock import iso
from common.config_schema import KEYS, MASK

CONFIG_COLUMNS = ("KEY", "VALUE")
EXPLAIN_COLUMNS = ("KEY", "VALUE", "SET BY")
HISTORY_COLUMNS = ("REV", "WHEN", "AUTHOR", "LAYER", "CHANGES")
ROLLOUT_COLUMNS = ("SITE", "GROUP", "DESIRED", "APPLIED", "STATE", "SEEN", "REFUSED")
COMMAND_COLUMNS = ("CREATED", "KIND", "STATE", "FINISHED", "BY", "ID", "MESSAGE")
ROLLOUT_STYLES = {
    "applied": "green",
    "pending": "yellow",
    "refused": "bold red",
    "offline": "red",
    "no agent": "dim",
}
COMMAND_STYLES = {
    "queued": "yellow",
    "delivered": "yellow",
    "succeeded": "green",
    "failed": "bold red",
    "rejected": "red",
    "expired": "dim",
}
LAYER_STYLES = {"default": "dim", "fleet": "", "group": "cyan", "site": "bold"}


def shown(key: str, value: str, secret: bool = False) -> str:
    """The value as it may be shown: a secret is the mask when set, else empty."""
    if secret or (key in KEYS and KEYS[key].secret):
        return MASK if value else ""
    return value


# --- JSON rows (the contract) ---------------------------------------------


def change_json(change: ConfigChange) -> dict[str, Any]:
    """The `config set --json` object; `revision` is null when nothing changed."""
    return {
        "layer": change.layer,
        "revision": change.revision or None,
        "changed": list(change.changed),
    }


def site_config_json(config: SiteConfig) -> dict[str, Any]:
    """The `config show --json` object: revisions, refusal and every effective key."""
    return {
        "site": config.site,
        "desired_revision": config.desired_revision,
        "applied_revision": config.applied_revision,
        "refused": config.refused or None,
        "entries": [
            {
                "key": e.key,
                "value": shown(e.key, e.value, e.secret),
                "layer": e.layer,
                "secret": e.secret or (e.key in KEYS and KEYS[e.key].secret),
            }
            for e in config.entries
        ],
    }


def revision_json(rev: ConfigRevision) -> dict[str, Any]:
    """One `config history --json` row; removed keys show as "(unset)"."""
    return {
        "revision": rev.revision,
        "layer": rev.layer,
        "scope": rev.scope,
        "target": rev.target,
        "author": rev.author,
        "at": iso(rev.at),
        "changes": {k: _change_value(k, v) for k, v in sorted(rev.changes.items())},
    }


def rollout_json(row: RolloutRow) -> dict[str, Any]:
    """One `config rollout --json` row."""
    return {
        "site": row.site,
        "group": row.group,
        "desired_revision": row.desired_revision,
        "applied_revision": row.applied_revision,
        "state": row.state,
        "refused": row.refused or None,
        "last_seen_at": iso(row.last_seen_at),
    }


def command_json(command: Command) -> dict[str, Any]:
    """One `commands --json` row."""
    return {
        "id": command.id,
        "site": command.site,
        "kind": command.kind,
        "state": command.state,
        "message": command.message,
        "created_at": iso(command.created_at),
        "created_by": command.created_by,
        "delivered_at": iso(command.delivered_at),
        "finished_at": iso(command.finished_at),
    }


def _change_value(key: str, value: str) -> str:
    return value if value == "(unset)" else shown(key, value)


# --- text views ------------------------------------------------------------


def change_text(change: ConfigChange) -> str:
    """`Revision 7 on site:shop-a changed backup.dir, backup.schedule.` or nothing changed."""
    if not change.revision or not change.changed:
        return f"Nothing changed on {change.layer}: it already held these values."
    return (
        f"Revision {change.revision} on {change.layer} changed {', '.join(change.changed)}.\n"
        "Connected agents get it within seconds; follow with 'storesafe config rollout'."
    )


def _revision_state(config: SiteConfig) -> Cell:
    if config.refused:
        return "refused", "bold red"
    if config.applied_revision >= config.desired_revision:
        return "applied", "green"
    return "pending", "yellow"


def site_config_text(config: SiteConfig, paint: Paint, *, explain: bool) -> str:
    """Revisions and refusal, then one line per key (with the layer that set it if asked)."""
    state, style = _revision_state(config)
    facts: list[list[Cell]] = [
        [("Site", "bold"), (config.site, "")],
        [("Desired revision", "bold"), (str(config.desired_revision), "")],
        [("Applied revision", "bold"), (f"{config.applied_revision or 'none'} ({state})", style)],
    ]
    if config.refused:
        facts.append([("Refused", "bold"), (config.refused, "red")])
    rows: list[list[Cell]] = []
    for e in config.entries:
        value = shown(e.key, e.value, e.secret)
        row: list[Cell] = [(e.key, ""), (value, "") if value else ("(empty)", "dim")]
        if explain:
            row.append((e.layer, LAYER_STYLES.get(e.layer.split(":")[0], "")))
        rows.append(row)
    headers = EXPLAIN_COLUMNS if explain else CONFIG_COLUMNS
    return columns(None, facts, paint) + "\n\n" + columns(headers, rows, paint)


def history_text(revisions: list[ConfigRevision], now: dt.datetime, paint: Paint) -> str:
    """Revisions newest first, each with its changes as `key=value, ...`."""
    rows = [
        [
            (str(r.revision), "bold"),
            (timestamp(r.at, now), ""),
            (r.author, ""),
            (r.layer, ""),
            (", ".join(f"{k}={v}" for k, v in revision_json(r)["changes"].items()), ""),
        ]
        for r in revisions
    ]
    return columns(HISTORY_COLUMNS, rows, paint)


def rollout_tally(rows: list[RolloutRow]) -> str:
    """`3 sites at their desired revision: 1 applied, 1 pending, 1 refused`-style tally."""
    tally: dict[str, int] = {}
    for row in rows:
        tally[row.state] = tally.get(row.state, 0) + 1
    noun = "site" if len(rows) == 1 else "sites"
    return f"{len(rows)} {noun}: " + ", ".join(f"{n} {state}" for state, n in tally.items())


def rollout_text(rows: list[RolloutRow], now: dt.datetime, paint: Paint) -> str:
    """One row per site, then the tally."""
    table = [
        [
            (r.site, "bold"),
            (r.group, ""),
            (str(r.desired_revision), ""),
            (str(r.applied_revision), ""),
            (r.state, ROLLOUT_STYLES.get(r.state, "dim")),
            (ago(r.last_seen_at, now), ""),
            (r.refused, "red"),
        ]
        for r in rows
    ]
    return columns(ROLLOUT_COLUMNS, table, paint) + "\n\n" + rollout_tally(rows)


def commands_text(commands: list[Command], now: dt.datetime, paint: Paint) -> str:
    """Remote commands newest first, with their outcome and the agent's message."""
    rows = [
        [
            (ago(c.created_at, now), ""),
            (c.kind, ""),
            (c.state, COMMAND_STYLES.get(c.state, "dim")),
            (ago(c.finished_at, now) if c.finished_at else "-", ""),
            (c.created_by, ""),
            (c.id, ""),
            (c.message, ""),
        ]
        for c in commands
    ]
    return columns(COMMAND_COLUMNS, rows, paint)


def sent_text(site: str, kind: str, command_id: str) -> str:
    """What `backup-now` / `sync-now` says after queueing."""
    return (
        f"Queued {kind} for site {site} as command {command_id}.\n"
        f"The agent gets it when connected; follow it with 'storesafe commands {site}'."
    )


# --- printing ----------------------------------------------------------------


def print_change(change: ConfigChange, *, as_json: bool) -> None:
    """Say what `config set` did (and warn on stderr when the layer reaches no site)."""
    if as_json:
        print_json(change_json(change))
    else:
        print_line(change_text(change))
    warning = reach_warning(change)
    if warning:
        print_warning(warning)


def reach_warning(change: ConfigChange) -> str:
    """A warning for a change that reaches no site now (a group name typo?), or ""."""
    if change.sites != 0:
        return ""
    scope, _, target = change.layer.partition(":")
    if scope == "group":
        return (
            f"no site is in group {target!r}: the change applies only to sites that join "
            "it later (see 'storesafe sites' for the groups in use)"
        )
    if scope == "fleet":
        return "no site is enrolled yet: the change applies to sites as they enroll"
    return ""


def print_site_config(config: SiteConfig, *, explain: bool, as_json: bool) -> None:
    """Show a site's effective configuration."""
    if as_json:
        print_json(site_config_json(config))
    else:
        print_line(site_config_text(config, painter(), explain=explain))


def print_history(revisions: list[ConfigRevision], now: dt.datetime, *, as_json: bool) -> None:
    """Show configuration revisions, newest first."""
    if as_json:
        print_json([revision_json(r) for r in revisions])
    elif revisions:
        print_line(history_text(revisions, now, painter()))
    else:
        print_line("No configuration changes yet: every site runs the defaults.")


def print_rollout(rows: list[RolloutRow], now: dt.datetime, *, as_json: bool) -> None:
    """Show where each site stands with its desired revision."""
    if as_json:
        print_json([rollout_json(r) for r in rows])
    elif rows:
        print_line(rollout_text(rows, now, painter()))
    else:
        print_line("No sites to show.")


def print_sent(site: str, kind: str, command_id: str, *, as_json: bool) -> None:
    """Say which command was queued and how to follow it."""
    if as_json:
        print_json({"command_id": command_id, "site": site, "kind": kind})
    else:
        print_line(sent_text(site, kind, command_id))


def print_commands(commands: list[Command], site: str, now: dt.datetime, *, as_json: bool) -> None:
    """Show remote commands, or say there are none."""
    if as_json:
        print_json([command_json(c) for c in commands])
    elif commands:
        print_line(commands_text(commands, now, painter()))
    else:
        print_line(f"No commands sent to site {site} yet.")
