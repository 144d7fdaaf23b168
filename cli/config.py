"""`storesafe config set | show | history | rollout`: layered configuration and its rollout.

Values are checked by the server (one source of truth, `common.config_schema`);
the CLI only splits `KEY=VALUE` and reads secrets given as `-` from stdin, so
that a password never has to be on the command line (or in shell history).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from cli import output_config, values
from cli.context import admin, invocation
from common.config_schema import KEYS
from common.errors import InvalidArgument

app = typer.Typer(
    name="config",
    help="Layered configuration (fleet, group, site), its history and its rollout to agents.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
FROM_STDIN = "-"
SECRET_KEYS = [k.name for k in KEYS.values() if k.secret]
KEY_LIST = "\n".join(
    f"{k.name}: {k.help} Default: {json.dumps(k.default) if k.default != '' else 'empty'}."
    for k in KEYS.values()
)
KEEP_RULES = (
    "Retention (after every backup, in backup.dir): the newest good (verified) backup "
    "is never deleted; of the good ones, the newest of each of the last "
    "backup.keep_daily days, backup.keep_weekly ISO weeks and backup.keep_monthly "
    "months (UTC) is kept, and the lower nbackup levels a kept one builds on; of the "
    "unverified or bad ones, the newest of each day is kept while it is newer than the "
    "newest good backup or its day is a kept day. Everything else is deleted and the "
    "agent logs each deletion with the rule that no longer holds it; `storesafe runs` "
    "then shows that run's file as pruned. All three at 0 turns retention off."
)


def read_secret(key: str) -> str:
    """The value of a secret key, typed without echo on a terminal or read from piped stdin."""
    if sys.stdin.isatty():
        text = str(
            typer.prompt(
                f"New value for {key}", hide_input=True, confirmation_prompt=True, err=True
            )
        )
    else:
        text = sys.stdin.read().rstrip("\r\n")
    if not text:
        raise InvalidArgument(
            f"no value for {key} was given on stdin: to clear it, use --unset {key}"
        )
    return text


def with_secrets(given: dict[str, str]) -> dict[str, str]:
    """Replace each secret key given as `-` by the value read from stdin (one key only)."""
    wanted = [k for k, v in given.items() if v == FROM_STDIN and k in SECRET_KEYS]
    if len(wanted) > 1:
        raise InvalidArgument(f"only one key can be read from stdin, not {', '.join(wanted)}")
    return {k: read_secret(k) if k in wanted else v for k, v in given.items()}


@app.command(
    "set",
    epilog="Keys (the server checks every value and names the key and the reason if it "
    "refuses one):\n" + KEY_LIST + "\n\n" + KEEP_RULES,
)
def set_config(
    ctx: typer.Context,
    *,
    assignments: Annotated[
        list[str] | None,
        typer.Argument(metavar="KEY=VALUE...", help="Keys to set, e.g. backup.dir='C:\\Backups'."),
    ] = None,
    fleet: Annotated[bool, typer.Option("--fleet", help="Change the fleet defaults.")] = False,
    group: Annotated[str | None, typer.Option(help="Change this group's layer.")] = None,
    site: Annotated[str | None, typer.Option(help="Change this site's layer.")] = None,
    unset: Annotated[
        list[str] | None,
        typer.Option(metavar="KEY", help="Remove KEY from the layer (repeatable)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Set keys on exactly one layer (--fleet, --group G or --site S); makes a new revision.

    Site beats group beats fleet beats the default. Agents get the new revision
    within seconds; follow it with 'storesafe config rollout'.

    Secrets (firebird.password) are write-only and shown masked. Give the
    value as '-' to keep it off the command line: 'firebird.password=-' asks
    for it without echo on a terminal, or reads it from stdin when piped
    (e.g. from a password manager).
    """
    scope, target = values.layer(fleet, group, site)
    removed = [key.strip() for key in unset or []]
    given = values.assignments(assignments or [], removed)
    if not given and not removed:
        raise InvalidArgument("give at least one KEY=VALUE or --unset KEY")
    change = admin(ctx).set_config(scope, target, with_secrets(given), removed)
    output_config.print_change(change, as_json=as_json)


@app.command("show")
def show(
    ctx: typer.Context,
    site: Annotated[str, typer.Argument(help="Name of the site.")],
    explain: Annotated[
        bool,
        typer.Option(
            "--explain", help="Say which layer set each key: default, fleet, group:G, site:S."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Show the effective configuration of SITE, secrets masked.

    Also shows the revision the site should run, the one its agent runs, and
    why the agent refused the latest one, if it did.
    """
    config = admin(ctx).get_config(values.name(site, "site"))
    output_config.print_site_config(config, explain=explain, as_json=as_json)


@app.command("history")
def history(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(metavar="N", help="At most N revisions (1-1000).")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List configuration revisions, newest first: layer, author, time and the keys changed."""
    revisions = admin(ctx).config_history(limit=values.limit(limit))
    output_config.print_history(revisions, invocation(ctx).now(), as_json=as_json)


@app.command("rollout")
def rollout(
    ctx: typer.Context,
    group: Annotated[str | None, typer.Option(help="Only sites in this group.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show each site's desired vs applied revision: applied, pending, refused, offline,
    or no agent (no agent enrolled yet, so nothing has applied it).

    Exits 0 even while some sites are pending: a rollout in progress is not an error.
    """
    group = values.name(group, "group") if group is not None else None
    rows = admin(ctx).config_rollout(group=group)
    output_config.print_rollout(rows, invocation(ctx).now(), as_json=as_json)
