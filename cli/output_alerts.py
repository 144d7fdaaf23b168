"""Rendering of `storesafe alerts`: deliveries newest first, then the totals.

Same rules as `cli.output`: JSON field names are a contract, ISO 8601 UTC times
with a trailing Z, `null` for never; text one line per row.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cli.humanize import ago
from cli.models import AlertDelivery, AlertList
from cli.output import columns, painter, print_json, print_line
from common.clock import iso

ALERT_COLUMNS = (
    "CREATED",
    "SITE",
    "EVENT",
    "CHANNEL",
    "DESTINATION",
    "TRIES",
    "STATE",
    "LAST ERROR",
)
STATE_STYLES = {"pending": "yellow", "delivered": "green", "failed": "bold red"}


def delivery_json(d: AlertDelivery) -> dict[str, Any]:
    """One `alerts --json` delivery."""
    return {
        "id": d.id,
        "created_at": iso(d.created_at),
        "site": d.site,
        "kind": d.kind,
        "status_from": d.status_from,
        "status_to": d.status_to,
        "channel": d.channel,
        "destination": d.destination,
        "attempts": d.attempts,
        "state": d.state,
        "last_error": d.last_error,
        "next_attempt_at": iso(d.next_attempt_at),
        "delivered_at": iso(d.delivered_at),
    }


def _event(d: AlertDelivery) -> str:
    if d.kind == "digest":
        return "digest"
    if d.kind == "transition":
        return f"{d.status_from}->{d.status_to}"
    return f"{d.kind} {d.status_to if d.kind == 'reminder' else d.status_from}"


def alerts_text(found: AlertList, now: dt.datetime) -> str:
    paint = painter()
    rows = [
        [
            (ago(d.created_at, now), ""),
            (d.site or "(fleet)", ""),
            (_event(d), ""),
            (d.channel, ""),
            (d.destination, ""),
            (str(d.attempts), ""),
            (d.state, STATE_STYLES.get(d.state, "dim")),
            (d.last_error or "-", ""),
        ]
        for d in found.deliveries
    ]
    return "\n".join([columns(ALERT_COLUMNS, rows, paint), "", totals_text(found)])


def totals_text(found: AlertList) -> str:
    return (
        f"{found.delivered} delivered, {found.pending} pending, {found.failed} failed; "
        f"{found.errors} failed attempt(s) in all."
    )


def print_alerts(found: AlertList, now: dt.datetime, *, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "deliveries": [delivery_json(d) for d in found.deliveries],
                "totals": {
                    "pending": found.pending,
                    "delivered": found.delivered,
                    "failed": found.failed,
                    "errors": found.errors,
                },
            }
        )
    elif found.deliveries:
        print_line(alerts_text(found, now))
    else:
        print_line("No alerts sent yet. " + totals_text(found))
