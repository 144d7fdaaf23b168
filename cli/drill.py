"""One restore from the off-site store, start to end, and the drill run it leaves on the server.

`restore_site` fetches and checks the backup files (`backup_fetch`) and, given
a database path, restores them into a new database and checks it
(`restore_db`). Every restore into a database is a drill: it is recorded on
the server as a run of kind `drill` of the site (RecordDrill), whatever its
outcome, with the snapshot and backup run, the bytes, the checks passed, the
row counts and how long each half took. A restore to a file only is not.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cli.backup_fetch import (
    BackupSource,
    Fetched,
    Plan,
    TargetExists,
    check_targets,
    fetch,
    open_plan,
)
from cli.models import DrillReport
from cli.progress import Start
from common.clock import Clock
from common.errors import StoreSafeError
from common.vault.keys import FleetPrivateKey

if TYPE_CHECKING:
    from cli.restore_db import DatabaseCheck, Server


class DrillSource(BackupSource, Protocol):
    """A restore's calls, and recording the drill."""

    def record_drill(self, drill: DrillReport) -> bool: ...


@dataclasses.dataclass
class Restore:
    """What one restore did and found; `error` is the first failure, None when all passed."""

    site: str
    to: Path
    started_at: dt.datetime
    target_database: Path | None = None  # asked for: then the restore is a drill
    finished_at: dt.datetime | None = None
    run_id: str = ""
    plan: Plan | None = None
    fetched: Fetched | None = None
    database: DatabaseCheck | None = None
    error: StoreSafeError | None = None
    recorded: bool = False
    record_error: StoreSafeError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.record_error is None

    @property
    def checksum_ok(self) -> bool:
        """The files were reassembled and matched every recorded checksum (a fetch returns
        only once every stream passed its checks)."""
        return self.fetched is not None


def restore_site(
    source: DrillSource,
    clock: Clock,
    *,
    site: str,
    key: FleetPrivateKey,
    to: Path,
    run_id: str = "",
    database: Path | None = None,
    server: Server | None = None,
    force: bool = False,
    start: Start = lambda total, name=None: lambda n: None,
    trigger: str = "restore",
) -> Restore:
    """Restore `site`'s newest backup (or backup run `run_id`) to `to`, and into
    `database` when given (then the drill is recorded); never raises a StoreSafeError."""
    result = Restore(site, to, clock.now(), database, run_id=run_id)
    try:
        result.plan = open_plan(source, site, key, to, run_id=run_id)
        result.run_id = result.plan.info.run_id
        check_targets(result.plan, to, force=force)
        result.fetched = fetch(source, result.plan, start)
        if database is not None and server is not None:
            from cli.restore_db import restore_and_check  # Firebird's client: only here

            done = start(1, "restoring into the database, validating")
            paths = result.fetched.paths
            result.database = restore_and_check(
                server, result.plan.method, paths, database, force=force
            )
            done(1)
            result.error = result.database.error
    except TargetExists as err:  # refused before anything was tried: not a drill
        result.error = err
        result.finished_at = clock.now()
        return result
    except StoreSafeError as err:
        result.error = err
    result.finished_at = clock.now()
    if database is not None:
        record(source, result, trigger)
    return result


def record(source: DrillSource, result: Restore, trigger: str) -> None:
    """Record `result` as a drill run of its site; a refusal lands in `record_error`."""
    try:
        result.recorded = not source.record_drill(drill_report(result, trigger))
    except StoreSafeError as err:
        result.record_error = err


def drill_report(result: Restore, trigger: str) -> DrillReport:
    """The drill run of a restore into a database."""
    plan, fetched, db = result.plan, result.fetched, result.database
    error = result.error
    return DrillReport(
        id=str(uuid.uuid4()),
        site=result.site,
        started_at=result.started_at,
        finished_at=result.finished_at or result.started_at,
        outcome="succeeded" if error is None else "failed",
        trigger=trigger,
        snapshot_id=plan.snapshot.snapshot_id if plan else "",
        backup_run_id=result.run_id,
        bytes_fetched=fetched.bytes_fetched if fetched else 0,
        backup_bytes=plan.info.size if plan else 0,
        checksum_ok=result.checksum_ok,
        restored=db.restored if db else False,
        validation_errors=db.validation_errors if db else 0,
        table_counts=dict(db.table_counts) if db else {},
        host=socket.gethostname()[:255],
        fetch_seconds=fetched.seconds if fetched else 0.0,
        restore_seconds=db.seconds if db else 0.0,
        error_class=(str(getattr(error, "error_class", error.code)) if error else "")[:64],
        error_message=(error.message if error is not None else "")[:1000],
    )
