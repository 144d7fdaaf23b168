"""`storesafe admin-token list|revoke`: the admin tokens that may drive the fleet.

New admin tokens are made on the server (`storesafe-server admin-token create`),
where the token is printed once; these commands never see a secret.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer

from cli import output
from cli.context import admin, invocation
from cli.humanize import timestamp
from cli.models import AdminToken
from common.clock import iso

app = typer.Typer(
    name="admin-token",
    help="Admin tokens: list them, revoke one by name (create them with "
    "`storesafe-server admin-token create`).",
    no_args_is_help=True,
)

COLUMNS = ("NAME", "ID", "STATE", "CREATED", "BY", "REVOKED")
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.command("list")
def list_tokens(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List every admin token, active and revoked, oldest first (names and ids only)."""
    tokens = admin(ctx).list_admin_tokens()
    if as_json:
        output.print_json([token_json(t) for t in tokens])
        return
    if not tokens:
        output.print_line("No admin tokens.")
        return
    now = invocation(ctx).now()
    rows = [_row(t, now) for t in tokens]
    output.print_line(output.columns(COLUMNS, rows, output.painter()))


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name of the active admin token to revoke.")],
    as_json: JsonOption = False,
) -> None:
    """Revoke the admin token NAME: every replica refuses it from now on.

    The last active admin token cannot be revoked (create another one first),
    so the fleet is never left without an admin.
    """
    token = admin(ctx).revoke_admin_token(name.strip())
    if as_json:
        output.print_json(token_json(token))
    else:
        output.print_line(f"Revoked admin token {token.name} ({token.id}); it is refused now.")


def token_json(token: AdminToken) -> dict[str, Any]:
    """One admin token as JSON (stable field names, ISO 8601 UTC, null for never)."""
    return {
        "name": token.name,
        "id": token.id,
        "active": token.active,
        "created_at": iso(token.created_at),
        "created_by": token.created_by or None,
        "revoked_at": iso(token.revoked_at),
        "revoked_by": token.revoked_by or None,
    }


def _row(token: AdminToken, now: dt.datetime) -> list[tuple[str, str]]:
    revoked = "-"
    if token.revoked_at is not None:
        revoked = f"{timestamp(token.revoked_at, now)} by {token.revoked_by or '-'}"
    return [
        (token.name, "bold"),
        (token.id, ""),
        ("active", "green") if token.active else ("revoked", "red"),
        (timestamp(token.created_at, now), ""),
        (token.created_by or "-", ""),
        (revoked, ""),
    ]
