"""`storesafe alerts`: what the server notified, where, and how each delivery went."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import output_alerts, values
from cli.context import admin, invocation

app = typer.Typer()


@app.command("alerts")
def list_alerts(
    ctx: typer.Context,
    site: Annotated[str, typer.Option(help="Only the alerts of this site.")] = "",
    limit: Annotated[int, typer.Option(metavar="N", help="At most N deliveries (1-1000).")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """List alert deliveries newest first: transitions, reminders, resolved notices and
    digests, with their channel, destination host, attempts, state and last error."""
    site = values.name(site, "site") if site else ""
    found = admin(ctx).list_alerts(site, limit=values.limit(limit))
    output_alerts.print_alerts(found, invocation(ctx).now(), as_json=as_json)
