"""The `storesafe` admin CLI: global connection options, the commands, one error handler.

Every expected failure (bad value, refused token, server down, unknown site)
arrives here as a `StoreSafeError` and leaves as `error: <sentence>` on
stderr with the error's exit code; no traceback.

Start-up: every run loads every command module (typer needs each command's
options and help), so a command module imports at its top only typer, the
standard library and the light CLI modules (values, context, models, output);
what a command does, and the heavy libraries that come with it (gRPC and
protobuf, the vault's cryptography, zstd and BLAKE3, Firebird's client, cron
parsing), is imported in the command's own body, and the admin client (gRPC) is
made on the first `admin(ctx)`; a library only some runs of a command need
(Firebird's, for a restore into a database) is imported where it is used. So
`--help` loads none of them and a command only its own.
tests/unit/cli/test_startup.py holds the rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from cli import (
    accept,
    admin_tokens,
    alerts,
    audit,
    check,
    commands,
    config,
    database,
    images,
    keys,
    output,
    runs,
    sites,
    tokens,
    verify_store,
)
from cli.client.settings import DEFAULT_TIMEOUT, Settings
from cli.context import Invocation
from common.errors import StoreSafeError
from common.version import VERSION


class StoreSafeGroup(TyperGroup):
    """The root command group: every expected failure becomes one line and an exit code."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except typer.TyperException as err:  # a bad global option
            _usage_error(err)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except StoreSafeError as err:
            output.print_error(err.message)
            raise typer.Exit(err.exit_code) from None
        except typer.TyperException as err:  # a bad command, option or value
            _usage_error(err)


def _usage_error(err: typer.TyperException) -> NoReturn:
    """Say what typer refused in one line, `error: missing option '--site' (see ...)`."""
    ctx = getattr(err, "ctx", None)
    if ctx is None or type(err).__name__ == "NoArgsIsHelpError":
        raise err  # not a usage error, or the wish to see help
    message = err.format_message().strip().rstrip(".")
    output.print_error(f"{message[:1].lower()}{message[1:]} (see '{ctx.command_path} --help')")
    raise typer.Exit(getattr(err, "exit_code", 2)) from None


app = typer.Typer(
    cls=StoreSafeGroup,
    name="storesafe",
    help="Drive a StoreSafe fleet: enrollment tokens, site status, runs, configuration, "
    "remote commands, monitoring checks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Exit codes: 0 done; 1 server failure; 2 bad value; 3 unknown site; "
    "4 token refused; 5 not possible now; 6 server unreachable. "
    "`check` uses monitoring-plugin codes instead (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).",
)
app.add_typer(tokens.app)
app.add_typer(sites.app)
app.add_typer(runs.app)
app.add_typer(check.app)
app.add_typer(audit.app)
app.add_typer(config.app)
app.add_typer(commands.app)
app.add_typer(admin_tokens.app)
app.add_typer(accept.app)
app.add_typer(alerts.app)
app.add_typer(keys.app)
app.add_typer(images.app)
app.add_typer(database.app)
app.add_typer(verify_store.app)


def _show_version(value: bool) -> None:
    if value:
        output.print_line(f"storesafe {VERSION}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    *,
    server: Annotated[
        str | None,
        typer.Option(
            envvar="STORESAFE_SERVER",
            metavar="HOST:PORT",
            help="Address of the StoreSafe server.",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="STORESAFE_TOKEN",
            metavar="TOKEN",
            show_default=False,
            help="Admin token (prefer the environment variable: it stays out of ps).",
        ),
    ] = None,
    ca: Annotated[
        Path | None,
        typer.Option(
            envvar="STORESAFE_CA",
            metavar="FILE",
            help="CA certificate of the server (ca.pem from its data dir); "
            "default: the system's trusted roots.",
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure", help="Plaintext instead of TLS; allowed only for a loopback server."
        ),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(min=0.1, max=3600, metavar="SECONDS", help="Deadline for each call."),
    ] = DEFAULT_TIMEOUT,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Drive a StoreSafe fleet: enrollment tokens, site status, runs, configuration, "
    "remote commands, monitoring checks."""
    if isinstance(ctx.obj, Invocation):  # prepared by a test
        return
    ctx.obj = Invocation(
        Settings(server=server, token=token, ca=ca, insecure=insecure, timeout=timeout)
    )
    ctx.call_on_close(ctx.obj.close)
