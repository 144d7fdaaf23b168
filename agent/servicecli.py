"""`storesafe-agent service ...`: install, remove, start, stop and query the agent's OS service."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from agent.servicectl import EXIT_NOT_RUNNING, ServiceManager, ServiceSpec, agent_command
from agent.settings import StateDir, resolve_state_dir
from common.errors import InvalidArgument


def for_this_platform() -> ServiceManager:
    """The real manager of this OS: the Windows SCM, or systemd elsewhere."""
    if sys.platform == "win32":
        from agent.winservicectl import PyWin32Api, WindowsServiceManager

        return WindowsServiceManager(PyWin32Api())
    from agent.systemdctl import SystemdManager, run_command

    return SystemdManager(run_command, command=agent_command())


# The seam tests replace with a manager on a fake (tests/support/services.py).
make_manager = for_this_platform

service_app = typer.Typer(
    no_args_is_help=True,
    help="Run the agent as a service: the Windows service StoreSafeAgent, or the systemd "
    "unit storesafe-agent.service.",
    epilog=f"`service status` exit codes: 0 running; {EXIT_NOT_RUNNING} not running or not "
    "installed; 5 the OS refused (not administrator/root, no systemd).",
)


def _manager() -> ServiceManager:
    return make_manager()


@service_app.command("install")
def install(
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="The enrolled state dir the service uses (default: as for `run`).",
            show_default=False,
        ),
    ] = None,
    account: Annotated[
        str | None,
        typer.Option(
            "--account",
            help="Run as this account instead of LocalSystem (Windows) or root (Linux): "
            "USER, DOMAIN\\USER, or a virtual account 'NT SERVICE\\StoreSafeAgent'.",
            show_default=False,
        ),
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(
            "--password-file",
            help="A file holding the account's password (Windows, a real user account).",
            show_default=False,
        ),
    ] = None,
    start: Annotated[
        bool, typer.Option("--start/--no-start", help="Start the service once installed.")
    ] = True,
) -> None:
    """Install the service (automatic start, restart on failure) for an enrolled agent."""
    state = StateDir(resolve_state_dir(state_dir).absolute())
    state.load_credentials()  # a service that cannot start is no use: enroll first
    password = None
    if password_file is not None:
        try:
            password = password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise InvalidArgument(
                f"cannot read the password file {password_file} ({exc.strerror or exc})"
            ) from exc
    spec = ServiceSpec(state_dir=state.root, account=account, password=password, start=start)
    typer.echo(_manager().install(spec))


@service_app.command("uninstall")
def uninstall() -> None:
    """Stop and remove the service; the state dir (credential, outbox, logs) is kept."""
    typer.echo(_manager().uninstall())


@service_app.command("start")
def start() -> None:
    """Start the installed service."""
    typer.echo(_manager().start())


@service_app.command("stop")
def stop() -> None:
    """Stop the service; undelivered reports stay in the outbox."""
    typer.echo(_manager().stop())


@service_app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Is the service installed and running? Exit 0 running, 3 not running or not installed."""
    shown = _manager().status()
    typer.echo(json.dumps(shown.to_json(), indent=2) if as_json else shown.line())
    raise typer.Exit(shown.exit_code)
