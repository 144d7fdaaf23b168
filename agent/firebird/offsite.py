"""Off-site upload runs of verified backups: when they run, what they report.

The Firebird capability starts one runner job, `BackupUploads.loop`: it wakes
when a backup passed verification (`backup_verified`, called by the backup
task) and otherwise every POLL_SECONDS, and each time, holding the agent's
one-job-at-a-time lock, runs `run`: the newest good backup not uploaded yet
is shipped (agent.firebird.upload) and an upload RunReport goes to the
outbox. Nothing to do (no new backup, upload.enabled off, the window closed)
makes no report. After a failure the next try waits RETRY_SECONDS; after a
run that used its time budget, BUDGET_REST_SECONDS, so a backup that came due
meanwhile goes first (the lock is fair). Runs only with upload.enabled on, a
store to send to, and upload.recovery_key set; without the key each new
backup gets one failed upload run saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from pathlib import Path

from agent.capability import Host, Setup
from agent.configsync import AgentConfig
from agent.datakey import DataKeyFile
from agent.domain.reports import Outcome, RunKind, RunReport, UploadDetails
from agent.firebird.files import list_backups
from agent.firebird.upload import (
    SPOOL_DIR,
    Choice,
    UploadLedger,
    UploadSettings,
    choose,
    upload_backup,
)
from agent.offsite.sitekey import site_keys
from agent.offsite.uploader import LoopStore
from agent.priority import in_background
from agent.runner import ReportSink
from common.errors import InvalidArgument, ResourceExhausted, StoreSafeError, Unavailable
from common.firebird.errors import FirebirdJobError
from common.vault import FleetPublicKey
from common.window import UploadWindow

log = logging.getLogger(__name__)

POLL_SECONDS = 300.0
RETRY_SECONDS = 1800.0
BUDGET_REST_SECONDS = 60.0
NO_KEY = (
    "upload.recovery_key is not configured (`storesafe keys create` sets it): verified "
    "backups stay on the shop PC until it is"
)


def settings_of(cfg: AgentConfig) -> UploadSettings:
    return UploadSettings(
        window=UploadWindow.parse(cfg.text("upload.window")),
        bandwidth_kbps=int(cfg["upload.bandwidth_kbps"]),
        max_run_minutes=int(cfg["upload.max_run_minutes"]),
    )


class BackupUploads:
    """The upload of each verified backup into the off-site store."""

    def __init__(self, setup: Setup) -> None:
        self._config = setup.config
        self._clock = setup.clock
        self._state_dir = setup.state_dir
        self._site = setup.site
        self._connect = setup.store_link
        self._ledger = UploadLedger(setup.state_dir)
        self._due = asyncio.Event()
        self._refused = ""  # the backup run last refused for want of a recovery key

    def missing(self, cfg: AgentConfig) -> str | None:
        """Why no upload runs at all (None: uploads are on)."""
        if not cfg["upload.enabled"]:
            return "upload.enabled is off"
        if self._connect is None or not self._site:
            return "this agent has no connection to an off-site store"
        if not cfg.text("backup.dir"):
            return "backup.dir is not configured"
        return None

    def backup_verified(self) -> None:
        """A backup passed verification: upload it soon."""
        self._due.set()

    async def loop(self, host: Host, sink: ReportSink) -> None:
        """The runner job: an upload run whenever due, one job at a time with the others."""
        delay = 0.0
        while True:
            woken = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.wait(), timeout=delay)
                woken = True
            self._due.clear()
            async with host.exclusive():
                report = await self.run("after-backup" if woken else "schedule")
            if report is not None:
                sink.submit(report)
            delay = next_delay(report)

    async def run(self, trigger: str) -> RunReport | None:
        """One upload run of the newest verified backup not uploaded yet; None if none ran."""
        cfg = self._config.current
        why_not = self.missing(cfg)
        if why_not is not None:
            return None
        backup_dir = Path(cfg.text("backup.dir"))
        choice = choose(list_backups(backup_dir), self._ledger)
        if choice is None:
            return None
        if not cfg.text("upload.recovery_key"):
            if self._refused == choice.manifest.run_id:
                return None
            self._refused = choice.manifest.run_id
            log.error("upload of %s not started: %s", choice.manifest.file, NO_KEY)
            now = self._clock.now()
            return self._failed(choice, trigger, "upload.no_recovery_key", NO_KEY, now)
        settings = settings_of(cfg)
        if not settings.window.is_open(self._clock.now()):
            log.debug("upload of %s waits for its window", choice.manifest.file)
            return None
        started = self._clock.now()
        log.info("upload of %s (%s) starts", choice.manifest.file, trigger)
        try:
            details = await self._upload(cfg, choice, backup_dir, settings)
        except StoreSafeError as exc:
            error_class, message = failure(exc)
            log.error("upload of %s failed (%s): %s", choice.manifest.file, error_class, message)
            return self._failed(choice, trigger, error_class, message, started)
        if details.complete:
            self._ledger.record(details.backup_run_id, details.snapshot_id)
        return RunReport(
            kind=RunKind.UPLOAD,
            started_at=started,
            finished_at=self._clock.now(),
            outcome=Outcome.SUCCEEDED,
            details=details,
            trigger=trigger,
        )

    async def _upload(
        self, cfg: AgentConfig, choice: Choice, backup_dir: Path, settings: UploadSettings
    ) -> UploadDetails:
        assert self._connect is not None
        try:
            recovery = FleetPublicKey.parse(cfg.text("upload.recovery_key"))
        except StoreSafeError as exc:
            raise InvalidArgument(f"upload.recovery_key is not usable: {exc.message}") from None
        link = self._connect()
        try:
            keys = await site_keys(link, DataKeyFile(self._state_dir, self._site), recovery)
            store = LoopStore(link, asyncio.get_running_loop())
            return await in_background(
                upload_backup,
                choice,
                backup_dir,
                settings,
                keys,
                store,
                spool_dir=self._state_dir / SPOOL_DIR,
                clock=self._clock,
                sleep=time.sleep,
            )
        finally:
            await link.close()

    def _failed(
        self, choice: Choice, trigger: str, error_class: str, message: str, started: dt.datetime
    ) -> RunReport:
        m = choice.manifest
        return RunReport(
            kind=RunKind.UPLOAD,
            started_at=started,
            finished_at=self._clock.now(),
            outcome=Outcome.FAILED,
            details=UploadDetails(
                file=m.file,
                backup_run_id=m.run_id,
                backup_size=sum(s.size_compressed for s in choice.streams),
            ),
            error_class=error_class,
            error_message=message,
            trigger=trigger,
        )


def failure(exc: StoreSafeError) -> tuple[str, str]:
    """The error class and the one sentence (with what happens next) of a failed upload."""
    later = f"the upload is tried again in {RETRY_SECONDS / 60:g} minutes"
    if isinstance(exc, FirebirdJobError):
        return exc.error_class, f"{exc.message} The next verified backup is uploaded instead."
    if isinstance(exc, ResourceExhausted):
        return (
            "upload.store_full",
            f"the off-site store refused the upload ({exc.message}); free space in the store "
            f"or raise its quota: {later}, without re-sending what arrived",
        )
    if isinstance(exc, Unavailable):
        return (
            "upload.unavailable",
            f"the off-site store could not be reached ({exc.message}); {later} and "
            "continues where it stopped",
        )
    return f"upload.{exc.code}", f"{exc.message}; {later}"


def next_delay(report: RunReport | None) -> float:
    """Seconds until the next upload run, after `report` (None: nothing ran)."""
    if report is None:
        return POLL_SECONDS
    if report.outcome is Outcome.FAILED:
        return RETRY_SECONDS
    details = report.details
    if isinstance(details, UploadDetails) and not details.complete:
        return BUDGET_REST_SECONDS
    return POLL_SECONDS
