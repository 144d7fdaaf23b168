"""`storesafe token create`: one-time enrollment tokens for new agents."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import output, values
from cli.context import admin

app = typer.Typer(name="token", help="Enrollment tokens for new agents.", no_args_is_help=True)


@app.command("create")
def create(
    ctx: typer.Context,
    site: Annotated[str, typer.Option(help="Site the agent will act for, e.g. shop-a.")],
    group: Annotated[
        str | None,
        typer.Option(help="Group of a new site; default: keep its group, or 'default'."),
    ] = None,
    expires: Annotated[
        str, typer.Option(metavar="DURATION", help="Lifetime, like 30m, 24h or 7d (1m to 30d).")
    ] = "24h",
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"token": ..., "expires_at": ...}.')
    ] = False,
) -> None:
    """Make a one-time enrollment token for SITE; an agent trades it for its own credential.

    The token is shown once and is stored only as a hash on the server.
    """
    site = values.name(site, "site")
    group = values.name(group, "group") if group is not None else ""
    lifetime = values.token_lifetime(expires)
    client = admin(ctx)
    token = client.create_token(site, group, lifetime)
    if as_json:
        output.print_json(output.token_json(token))
    else:
        output.print_token(token, expires.strip().lower(), client.server, client.settings.ca)
