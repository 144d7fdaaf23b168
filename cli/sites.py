"""`storesafe sites`, `site` and `revoke`: the fleet view, one site, revoking its agents."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import output, values
from cli.context import admin, invocation
from cli.models import STATUSES

app = typer.Typer()

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.command("sites")
def list_sites(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option(metavar="STATUS", help=f"Only sites with this status: {', '.join(STATUSES)}."),
    ] = None,
    group: Annotated[str | None, typer.Option(help="Only sites in this group.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List every site with its status, last verified backup and problems.

    Status: never (no verified backup yet), offline, failing, stale, warning or ok.
    """
    wanted = values.status_name(status) if status is not None else None
    group = values.name(group, "group") if group is not None else None
    rows = admin(ctx).list_sites(status=wanted, group=group)
    if as_json:
        output.print_json([output.site_json(row) for row in rows])
    else:
        output.print_sites(rows, invocation(ctx).now(), filtered=bool(wanted or group))


@app.command("site")
def show_site(
    ctx: typer.Context,
    site: Annotated[str, typer.Argument(help="Name of the site.")],
    as_json: JsonOption = False,
) -> None:
    """Show one site in detail: status and problems, backups, agent, disks, Firebird health."""
    detail = admin(ctx).get_site(values.name(site, "site"))
    if as_json:
        output.print_json(output.site_detail_json(detail))
    else:
        output.print_site(detail, invocation(ctx).now())


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    site: Annotated[str, typer.Argument(help="Name of the site.")],
    as_json: JsonOption = False,
) -> None:
    """Revoke the agent credentials of SITE; its agents must enroll again with a new token."""
    site = values.name(site, "site")
    count = admin(ctx).revoke_agents(site)
    if as_json:
        output.print_json({"site": site, "revoked": count})
    else:
        output.print_revoked(site, count)
