"""The `storesafe-agent` command line: enroll, run, status, backup-now, sync-now, service.

Start-up: what only one command needs is imported in that command's body: the
service loop (runner, scheduler, directives) for `run`, the Firebird capability
(and Firebird's client) for `backup-now` and the backup list of `status`; so a
`sync-now` loads the image pass, the transport and the vault, not the rest.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from agent.capability import Setup
from agent.configsync import ConfigStore
from agent.delivery import deliver_now
from agent.domain.errors import AlreadyRunning, JobNotConfigured
from agent.domain.reports import RunReport
from agent.enroll import enroll as do_enroll
from agent.images.capability import ImageSync, missing_settings, sync_summary
from agent.images.errors import OutsideUploadWindow, PassAlreadyRunning
from agent.lock import StateLock
from agent.logfile import file_handler, log_to, stderr_handler
from agent.outbox import Outbox
from agent.servicecli import service_app
from agent.settings import Credentials, StateDir, read_ca_file, resolve_state_dir
from agent.status import StatusFile
from agent.transport import aio
from agent.transport.link import ServerLink
from agent.transport.store import StoreCalls
from common.clock import SystemClock, human_time, iso
from common.errors import StoreSafeError
from common.firebird.errors import BackupBusy
from common.version import VERSION

if TYPE_CHECKING:
    from agent.runner import RunnerConfig

BACKUP_BUSY = BackupBusy.error_class


class AgentGroup(TyperGroup):
    """The command group: every expected failure becomes one line on stderr and an exit code."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except typer.TyperException as err:  # a bad option before the command
            _usage_error(err)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except StoreSafeError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except typer.TyperException as err:  # a bad command, option or value
            _usage_error(err)
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None


def _usage_error(err: typer.TyperException) -> NoReturn:
    ctx = getattr(err, "ctx", None)
    if ctx is None or type(err).__name__ == "NoArgsIsHelpError":
        raise err
    message = err.format_message().strip().rstrip(".")
    first = " ".join(message.split())
    typer.echo(f"error: {first[:1].lower()}{first[1:]} (see '{ctx.command_path} --help')", err=True)
    raise typer.Exit(getattr(err, "exit_code", 2)) from None


app = typer.Typer(
    cls=AgentGroup,
    name="storesafe-agent",
    help="StoreSafe agent: verified hot backups of the shop database, reported to the server.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    epilog="Exit codes: 0 done; 1 failure; 2 bad value; 4 token or credential refused; "
    "5 not possible now (not enrolled, already running, job not configured); "
    "6 server unreachable.",
)

app.add_typer(service_app, name="service")

StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Where the agent keeps its credential and outbox (default: $STORESAFE_STATE_DIR, "
        "else %ProgramData%\\StoreSafe on Windows, /var/lib/storesafe-agent elsewhere).",
        show_default=False,
    ),
]


def setup_logging(level: int = logging.INFO) -> None:
    """Log lines with UTC timestamps to stderr."""
    formatter = logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%SZ"
    )
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"storesafe-agent {VERSION}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """StoreSafe agent."""


@app.command()
def enroll(
    *,
    server: Annotated[str, typer.Option("--server", help="The server as HOST:PORT.")],
    token: Annotated[
        str, typer.Option("--token", help="One-time token from `storesafe token create`.")
    ],
    site: Annotated[str, typer.Option("--site", help="The site this PC belongs to.")],
    state_dir: StateDirOption = None,
    ca: Annotated[
        Path | None,
        typer.Option("--ca", help="The server's CA certificate (PEM); default: system roots."),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Plaintext, for a loopback server only (tests).")
    ] = False,
) -> None:
    """Trade a one-time enrollment token for this agent's own credential."""
    setup_logging(logging.WARNING)
    ca_pem = read_ca_file(ca) if ca is not None else None
    state = StateDir(resolve_state_dir(state_dir))
    creds = aio.run(
        do_enroll(
            state=state,
            server=server,
            token=token,
            site=site,
            ca_pem=ca_pem,
            insecure=insecure,
            clock=SystemClock(),
        )
    )
    typer.echo(
        f"enrolled as agent {creds.agent_id} for site {creds.site} (group {creds.group}); "
        f"state in {state.root}"
    )


@app.command()
def run(
    state_dir: StateDirOption = None,
    interval: Annotated[
        float | None,
        typer.Option(
            "--interval",
            min=0.1,
            envvar="STORESAFE_CHECKIN_INTERVAL",
            help="Seconds between check-ins (default: what the server says).",
        ),
    ] = None,
    retry_max: Annotated[
        float,
        typer.Option(
            "--retry-max",
            min=1.0,
            envvar="STORESAFE_RETRY_MAX",
            help="Longest wait in seconds between reconnect attempts.",
        ),
    ] = 60.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Run the unattended agent loop until SIGTERM or Ctrl-C (logging to stderr and agent.log)."""
    from agent.runner import RunnerConfig
    from common.memory import AGENT_TRIM_THRESHOLD, keep_large_buffers

    keep_large_buffers(AGENT_TRIM_THRESHOLD)  # upload buffers reused, not faulted in again
    setup_logging(logging.DEBUG if verbose else logging.INFO)
    config = RunnerConfig(
        interval_override=interval,
        retry_cap=retry_max,
        refused_retry=max(retry_max, 300.0 if interval is None else interval),
    )
    state = StateDir(resolve_state_dir(state_dir))
    state.ensure()
    log_to([stderr_handler(), file_handler(state.root)], logging.getLogger().level)
    state.load_credentials()  # fail fast, before the loop, when not enrolled
    aio.run(_run(state, config))


async def _run(state: StateDir, config: RunnerConfig) -> None:
    from agent.service import install_stop_signals, serve

    stop = asyncio.Event()
    install_stop_signals(stop)
    await serve(state, stop, config=config)


@app.command()
def status(
    state_dir: StateDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show this agent's local state: site, server, last check-in, outbox, backup files."""
    setup_logging(logging.WARNING)
    data = local_status(StateDir(resolve_state_dir(state_dir)))
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table(show_header=False, box=None)
    for key, value in data.items():
        shown = _human(key, value)
        table.add_row(key.replace("_", " "), shown)
    Console().print(table)


def _human(key: str, value: object) -> str:
    if value is None:
        return "never" if key.endswith("_at") else "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key.endswith("_at") and isinstance(value, str):
        return human_time(dt.datetime.fromisoformat(value))  # the `storesafe` CLI's format
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)


def local_status(state: StateDir) -> dict[str, Any]:
    """The fields of `status --json` (stable names, ISO 8601 UTC, null for never)."""
    creds = state.load_credentials()
    checkin = StatusFile(state.status_path).load()
    with Outbox(state.outbox_path) as outbox:
        pending, rejected = outbox.pending(), outbox.rejected()
    lock = StateLock(state.root)
    running = lock.is_held_elsewhere()
    return {
        "running": running,
        "pid": lock.owner_pid() if running else None,
        "site": creds.site,
        "group": creds.group,
        "server": creds.server,
        "agent_id": creds.agent_id,
        "agent_version": VERSION,
        "state_dir": str(state.root),
        "enrolled_at": iso(creds.enrolled_at),
        "last_checkin_at": iso(checkin.last_checkin_at),
        "last_attempt_at": iso(checkin.last_attempt_at),
        "last_result": checkin.last_result,
        "last_error": checkin.last_error or None,
        "checkin_interval_seconds": checkin.checkin_interval_seconds,
        "outbox_pending": pending,
        "outbox_rejected": rejected,
        "last_delivery_at": iso(checkin.last_delivery_at),
        "config_revision": checkin.config_revision,
        "desired_config_revision": checkin.desired_config_revision,
        **backup_files(ConfigStore(state.root).current.text("backup.dir")),
    }


def backup_files(backup_dir: str) -> dict[str, Any]:
    """What backup.dir holds: the newest good backup, and how many are unverified or bad."""
    from agent.firebird.files import Status, list_backups

    manifests = list_backups(Path(backup_dir)) if backup_dir else []
    good = [m for m in manifests if m.status == Status.GOOD]
    return {
        "newest_good_backup": good[-1].file if good else None,
        "newest_good_backup_at": iso(good[-1].finished) if good else None,
        "backups_good": len(good),
        "backups_unverified": sum(m.status == Status.UNVERIFIED for m in manifests),
        "backups_bad": [m.file for m in manifests if m.status == Status.BAD],
    }


def _not_configured(job: str, why: str) -> NoReturn:
    raise JobNotConfigured(f"no {job} job is configured on this agent yet ({why})")


@app.command("backup-now")
def backup_now(state_dir: StateDirOption = None) -> None:
    """Take a verified backup of the shop database now (with the configuration from the server).

    The report goes to the outbox, then straight to the server; when the server
    cannot take it now, `storesafe-agent run` delivers it later. Exit code 0 when
    the backup was verified good, 1 when it failed.
    """
    from agent.firebird.capability import FirebirdTasks, command_result

    setup_logging(logging.WARNING)
    state = StateDir(resolve_state_dir(state_dir))
    creds = state.load_credentials()  # a clear error when not enrolled
    store = ConfigStore(state.root)
    tasks = FirebirdTasks(store, SystemClock())
    why_not = tasks.backup_missing(store.current)
    if why_not is not None:
        _not_configured("backup", f"{why_not}; set it for this site on the server")
    console = Console(stderr=True)
    with console.status(f"Backing up {store.current.text('firebird.database')} ..."):
        report = aio.run(tasks.backup("local"))
    if report.error_class == BACKUP_BUSY:  # another job has this backup.dir: not a failure
        raise AlreadyRunning(
            f"another backup job is running in {store.current.text('backup.dir')}; "
            "nothing was queued, try again when it has finished"
        )
    with Outbox(state.outbox_path) as outbox:
        outbox.put(report)
        with console.status(f"Reporting to {creds.server} ..."):
            delivered = aio.run(_deliver(state, creds, outbox, report))
    result = command_result(report, None)
    typer.echo(
        result.message
        if report.outcome.value == "succeeded"
        else f"backup failed ({report.error_class}): {report.error_message}"
    )
    typer.echo(delivered[:1].upper() + delivered[1:] + ".")
    if report.outcome.value != "succeeded":
        raise typer.Exit(1)


async def _deliver(state: StateDir, creds: Credentials, outbox: Outbox, report: RunReport) -> str:
    async with ServerLink.for_agent(state, creds) as link:
        return await deliver_now(link, outbox, report)


@app.command("sync-now")
def sync_now(state_dir: StateDirOption = None) -> None:
    """Sync the image folder into the off-site store now (with the configuration from the server).

    One pass: new and changed files are read, only the chunks the server lacks
    are sent, and a snapshot is committed (none when nothing changed since the
    last). The report goes to the outbox, then straight to the server. Exit code 0
    when the pass succeeded (or stopped incomplete at its time budget), 1 when it
    failed; outside upload.window nothing runs and the exit code is non-zero.
    """
    setup_logging(logging.WARNING)
    state = StateDir(resolve_state_dir(state_dir))
    creds = state.load_credentials()  # a clear error when not enrolled
    store = ConfigStore(state.root)
    why_not = missing_settings(store.current)
    if why_not is not None:
        _not_configured("image sync", f"{why_not}; set it for this site on the server")
    sync = ImageSync(
        Setup(
            config=store,
            clock=SystemClock(),
            state_dir=state.root,
            site=creds.site,
            store_link=lambda: StoreCalls(ServerLink.for_agent(state, creds)),
        )
    )
    console = Console(stderr=True)
    with console.status(f"Syncing {store.current.text('images.dir')} ..."):
        report = aio.run(sync.sync("local"))
    if report is None:  # outside the upload window: nothing ran, nothing to report
        raise OutsideUploadWindow(f"image sync not run: {sync.not_run}")
    if report.error_class == PassAlreadyRunning.code:  # the agent is at it: not a failure
        raise AlreadyRunning(report.error_message)
    with Outbox(state.outbox_path) as outbox:
        outbox.put(report)
        with console.status(f"Reporting to {creds.server} ..."):
            delivered = aio.run(_deliver(state, creds, outbox, report))
    typer.echo(sync_summary(report))
    typer.echo(delivered[:1].upper() + delivered[1:] + ".")
    if report.outcome.value != "succeeded":
        raise typer.Exit(1)
