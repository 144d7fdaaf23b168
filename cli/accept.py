"""`storesafe accept-change`: accept a site's changed backup figures as its new baseline."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import output, values
from cli.context import admin

app = typer.Typer()


@app.command("accept-change")
def accept_change(
    ctx: typer.Context,
    site: Annotated[str, typer.Argument(help="Name of the site.")],
    run: Annotated[
        str | None,
        typer.Option(
            "--run", metavar="ID", help="The backup run to accept; default: the newest good one."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Accept that SITE's database changed (the wrong-database guard), after checking it.

    The server compares every verified backup with the site's accepted one,
    whatever the database path: a table or all rows dropping sharply, the
    database shrinking by half, or tables missing or new keep the site at
    warning. If the change is intended (a cleanup, a new program version),
    accept it: later backups are compared with the accepted one. Who accepted
    it is recorded in the audit log ('storesafe audit').
    """
    site = values.name(site, "site")
    run_id, cleared = admin(ctx).accept_change(site, (run or "").strip())
    if as_json:
        output.print_json({"site": site, "run_id": run_id, "cleared": cleared or None})
    elif cleared:
        output.print_line(
            output.clean(
                f"Accepted backup {run_id} as the baseline of site {site}; cleared: {cleared}"
            )
        )
    else:
        output.print_line(
            f"Accepted backup {run_id} as the baseline of site {site} (no change was open)."
        )
