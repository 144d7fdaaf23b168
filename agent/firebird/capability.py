"""The Firebird backup capability: its tasks, commands, start job, health and backup volume.

Backup (with verification by restore and retention), online validation of
the live database and the re-check of kept backup files run here for the
scheduler, for the "backup-now" remote command and for the local
`storesafe-agent backup-now`; at the start, backups a kill left unverified
are verified. Each backup that passed verification wakes the off-site upload
(agent.firebird.offsite), a runner job of this capability. Every job runs
through `priority.in_background` (low CPU and IO priority). Each returns its
RunReport; the latest database figures go into the next check-in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from croniter import croniter

from agent.capability import Capability, Host, Setup
from agent.commands import CommandResult, Handler
from agent.configsync import AgentConfig, ConfigStore
from agent.domain.messages import CheckIn
from agent.domain.reports import BackupDetails, FirebirdHealth, RunReport, Verification
from agent.firebird.files import Status, list_backups
from agent.firebird.jobs import BackupSettings, JobOutcome, run_backup_job
from agent.firebird.offsite import BackupUploads
from agent.firebird.recheck import run_pending_verifications, run_recheck_job
from agent.firebird.retention import RetentionPolicy
from agent.firebird.validate import run_validation_job
from agent.priority import in_background
from agent.runner import Job, ReportSink
from agent.scheduler import Task
from common.clock import Clock
from common.firebird.connection import FirebirdTarget
from common.firebird.errors import BackupBusy, FirebirdJobError

log = logging.getLogger(__name__)


def target_of(cfg: AgentConfig) -> FirebirdTarget:
    library = cfg.text("firebird.client_library")
    return FirebirdTarget(
        host=cfg.text("firebird.host"),
        database=cfg.text("firebird.database"),
        user=cfg.text("firebird.user"),
        password=cfg.text("firebird.password"),
        client_library=library or None,
    )


def nbackup_level(cfg: AgentConfig, now: dt.datetime, backup_dir: Path) -> int:
    """0 when no good level-0 base is newer than the last full-backup slot, else 1."""
    slot: dt.datetime = croniter(cfg.text("backup.nbackup_full_schedule"), now).get_prev(
        dt.datetime
    )
    bases = [
        m.finished
        for m in list_backups(backup_dir)
        if m.method == "nbackup" and m.level == 0 and m.status == Status.GOOD
    ]
    return 1 if bases and max(bases) >= slot else 0


def settings_of(cfg: AgentConfig, now: dt.datetime, server_user: str) -> BackupSettings:
    backup_dir = Path(cfg.text("backup.dir"))
    method = cfg.text("backup.method")
    return BackupSettings(
        backup_dir=backup_dir,
        method=method,
        level=nbackup_level(cfg, now, backup_dir) if method == "nbackup" else 0,
        retention=RetentionPolicy(
            keep_daily=int(cfg["backup.keep_daily"]),
            keep_weekly=int(cfg["backup.keep_weekly"]),
            keep_monthly=int(cfg["backup.keep_monthly"]),
        ),
        server_user=server_user,
    )


class FirebirdTasks:
    """The backup and validation tasks of one agent."""

    def __init__(
        self,
        config: ConfigStore,
        clock: Clock,
        *,
        server_user: str = "firebird",
        on_verified: Callable[[], None] = lambda: None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._server_user = server_user
        self._on_verified = on_verified  # a backup passed verification
        self.latest_health: FirebirdHealth | None = None

    def health(self) -> FirebirdHealth | None:
        return self.latest_health

    def backup_volume(self) -> dict[str, Path]:
        backup_dir = self._config.current.text("backup.dir")
        return {"backup": Path(backup_dir)} if backup_dir else {}

    @staticmethod
    def backup_missing(cfg: AgentConfig) -> str | None:
        if not cfg.text("firebird.database"):
            return "firebird.database is not configured"
        if not cfg.text("backup.dir"):
            return "backup.dir is not configured"
        return None

    @staticmethod
    def validation_missing(cfg: AgentConfig) -> str | None:
        return "firebird.database is not configured" if not cfg.text("firebird.database") else None

    def tasks(self) -> list[Task]:
        return [
            Task("backup", "backup.schedule", self.backup_missing, self.backup),
            Task("validation", "validate.schedule", self.validation_missing, self.validate),
            Task("recheck", "backup.recheck_schedule", self.backup_missing, self.recheck),
        ]

    async def backup(self, trigger: str) -> RunReport:
        cfg = self._config.current
        settings = settings_of(cfg, self._clock.now().astimezone(), self._server_user)
        log.info(
            "backup of %s (%s, level %d) into %s",
            cfg.text("firebird.database"),
            settings.method,
            settings.level,
            settings.backup_dir,
        )
        outcome = await in_background(run_backup_job, target_of(cfg), settings, clock=self._clock)
        self._log(outcome)
        if isinstance(outcome.details, BackupDetails) and outcome.details.health is not None:
            self.latest_health = outcome.details.health
        self._verified(outcome)
        return outcome.to_report(trigger=trigger)

    async def recheck(self, trigger: str) -> RunReport:
        """Checksums of the kept backups again, and a restore of the newest good one if due."""
        cfg = self._config.current
        settings = settings_of(cfg, self._clock.now().astimezone(), self._server_user)
        outcome = await in_background(run_recheck_job, target_of(cfg), settings, clock=self._clock)
        self._log(outcome)
        return outcome.to_report(trigger=trigger)

    async def resume(self) -> list[RunReport]:
        """Verify the backups an interrupted job left unverified (at the agent's start)."""
        cfg = self._config.current
        if self.backup_missing(cfg) is not None:
            return []
        settings = settings_of(cfg, self._clock.now().astimezone(), self._server_user)
        try:
            outcomes = await in_background(
                run_pending_verifications, target_of(cfg), settings, clock=self._clock
            )
        except FirebirdJobError as exc:
            log.warning("unverified backups not checked at start: %s", exc.message)
            return []
        for outcome in outcomes:
            self._log(outcome)
            self._verified(outcome)
        return [o.to_report(trigger="resume") for o in outcomes]

    async def validate(self, trigger: str) -> RunReport:
        cfg = self._config.current
        outcome = await in_background(run_validation_job, target_of(cfg), clock=self._clock)
        self._log(outcome)
        return outcome.to_report(trigger=trigger)

    def _verified(self, outcome: JobOutcome) -> None:
        details = outcome.details
        if isinstance(details, BackupDetails) and details.verification is Verification.PASSED:
            self._on_verified()

    @staticmethod
    def _log(outcome: JobOutcome) -> None:
        if outcome.succeeded:
            log.info("%s succeeded", outcome.kind.value)
        elif outcome.error_class == BackupBusy.error_class:  # another job has it: not a fault
            log.info("%s not started: %s", outcome.kind.value, outcome.error_message)
        else:
            log.error(
                "%s failed (%s): %s", outcome.kind.value, outcome.error_class, outcome.error_message
            )


def command_result(report: RunReport | None, why_not: str | None) -> CommandResult:
    """How a remote run-now command ended, in one line."""
    if report is None:
        return CommandResult(
            "rejected", f"not run on this agent: {why_not or 'the job is not configured'}"
        )
    if report.outcome.value == "succeeded":
        extra = ""
        if isinstance(report.details, BackupDetails) and report.details.file:
            extra = f": {Path(report.details.file).name} verified"
        return CommandResult("succeeded", f"{report.kind.value} succeeded{extra}")
    return CommandResult("failed", report.error_message or f"{report.kind.value} failed")


class FirebirdBackup(Capability):
    """Verified hot backups, online validation and re-checks of one shop database."""

    name = "firebird"

    def __init__(self, setup: Setup) -> None:
        self._config = setup.config
        self.uploads = BackupUploads(setup)
        self.jobs = FirebirdTasks(
            setup.config, setup.clock, on_verified=self.uploads.backup_verified
        )

    def why_not_configured(self) -> str | None:
        return self.jobs.backup_missing(self._config.current)

    def tasks(self) -> Sequence[Task]:
        return self.jobs.tasks()

    def commands(self, host: Host) -> Mapping[str, Handler]:
        async def backup_now() -> CommandResult:
            report = await host.run("backup", trigger="remote")
            return command_result(report, self.why_not_configured())

        return {"backup-now": backup_now}

    def start_jobs(self, host: Host) -> Sequence[Job]:
        async def resume_unverified(sink: ReportSink) -> None:
            """At the start, verify the backups an interrupted job left unverified."""
            async with host.exclusive():
                reports = await self.jobs.resume()
            for report in reports:
                sink.submit(report)

        async def upload_verified(sink: ReportSink) -> None:
            """Ship each verified backup into the off-site store (agent.firebird.offsite)."""
            await self.uploads.loop(host, sink)

        return [resume_unverified, upload_verified]

    def checkin(self, checkin: CheckIn) -> CheckIn:
        health = self.jobs.health()
        return checkin if health is None else dataclasses.replace(checkin, firebird=health)

    def volumes(self) -> Mapping[str, Path]:
        return self.jobs.backup_volume()
