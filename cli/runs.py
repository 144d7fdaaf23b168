"""`storesafe runs`: the recent jobs of one site, newest first."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import output, values
from cli.context import admin, invocation
from cli.models import KINDS

app = typer.Typer()


@app.command("runs")
def list_runs(
    ctx: typer.Context,
    site: Annotated[str, typer.Argument(help="Name of the site.")],
    kind: Annotated[
        str | None,
        typer.Option(metavar="KIND", help=f"Only runs of this kind: {', '.join(KINDS)}."),
    ] = None,
    limit: Annotated[int, typer.Option(metavar="N", help="At most N runs (1-1000).")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the recent runs of SITE: backups with their verification, image syncs, uploads."""
    site = values.name(site, "site")
    wanted = values.kind_name(kind) if kind is not None else None
    rows = admin(ctx).list_runs(site, kind=wanted, limit=values.limit(limit))
    if as_json:
        output.print_json([output.run_json(row) for row in rows])
    else:
        output.print_runs(rows, site, invocation(ctx).now())
