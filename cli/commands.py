"""`storesafe backup-now`, `sync-now` and `commands`: remote commands to a site's agent.

A command is queued on the server and delivered over the agent's config
stream; the agent runs it once and reports the outcome, which `commands` shows.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli import output_config, values
from cli.context import admin, invocation

app = typer.Typer()

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
SiteArgument = Annotated[str, typer.Argument(help="Name of the site.")]


def _send(ctx: typer.Context, site: str, kind: str, as_json: bool) -> None:
    site = values.name(site, "site")
    command_id = admin(ctx).send_command(site, kind)
    output_config.print_sent(site, kind, command_id, as_json=as_json)


@app.command("backup-now")
def backup_now(ctx: typer.Context, site: SiteArgument, as_json: JsonOption = False) -> None:
    """Ask the agent of SITE to take (and verify) a backup now; prints the command id."""
    _send(ctx, site, "backup-now", as_json)


@app.command("sync-now")
def sync_now(ctx: typer.Context, site: SiteArgument, as_json: JsonOption = False) -> None:
    """Ask the agent of SITE to sync the image folder now; prints the command id."""
    _send(ctx, site, "sync-now", as_json)


@app.command("commands")
def list_commands(
    ctx: typer.Context,
    site: SiteArgument,
    limit: Annotated[int, typer.Option(metavar="N", help="At most N commands (1-1000).")] = 20,
    as_json: JsonOption = False,
) -> None:
    """List the remote commands of SITE, newest first, with their outcome.

    State: queued, delivered, succeeded, failed, rejected (the agent cannot run
    it, e.g. the job is not configured) or expired.
    """
    site = values.name(site, "site")
    rows = admin(ctx).list_commands(site, limit=values.limit(limit))
    output_config.print_commands(rows, site, invocation(ctx).now(), as_json=as_json)
