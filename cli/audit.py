"""`storesafe audit`: who did what to the fleet, and when."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import output, values
from cli.context import admin, invocation

app = typer.Typer()


@app.command("audit")
def list_audit(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(metavar="N", help="At most N entries (1-1000).")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the latest admin actions (token created, agents revoked, ...), newest first."""
    entries = admin(ctx).list_audit(limit=values.limit(limit))
    if as_json:
        output.print_json([output.audit_json(e) for e in entries])
    else:
        output.print_audit(entries, invocation(ctx).now())
