"""The image-sync capability: its task on `images.schedule`, the "sync-now" command, its reports.

Configured when `images.dir` and `upload.recovery_key` are set. Each run
makes sure the site's data key is registered sealed to the configured
recovery key (agent.datakey), then runs one pass (agent.images.sync) in a
worker thread at low CPU and IO priority, and returns an image-sync
RunReport with the pass figures; the runner's outbox delivers it.

Outside the upload window (`upload.window`) no pass starts: a scheduled run
does nothing and leaves no report (a run row every half hour of every night
would bury the real ones, and the status's "image sync older than its limit"
already tells when a window is too short), and "sync-now" is answered
"rejected" with when the window next opens. A pass stops at its next batch
boundary when the window closes or its time budget (`images.max_pass_minutes`)
is spent: its report is a succeeded run marked `incomplete`, with the reason.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from agent.capability import Capability, Host, Setup
from agent.commands import CommandResult, Handler
from agent.configsync import AgentConfig
from agent.datakey import DataKeyFile
from agent.domain.errors import StateDirUnusable
from agent.domain.reports import ImageSyncDetails, Outcome, RunKind, RunReport
from agent.images.sync import SHORT_ID, SyncOutcome, SyncSettings, run_sync
from agent.offsite.sitekey import site_keys
from agent.offsite.uploader import LoopStore
from agent.priority import in_background
from common.errors import StoreSafeError
from common.vault import FleetPublicKey
from common.window import UploadWindow

if TYPE_CHECKING:
    from agent.scheduler import Task

log = logging.getLogger(__name__)

TASK = "image-sync"
INDEX_DIR = "images"


def missing_settings(cfg: AgentConfig) -> str | None:
    if not cfg.text("images.dir"):
        return "images.dir is not configured"
    if not cfg.text("upload.recovery_key"):
        return "upload.recovery_key is not configured (`storesafe keys create` sets it)"
    return None


class ImageSync(Capability):
    """Incremental, encrypted copies of the scanned-image folder into the off-site store."""

    name = "images"

    def __init__(self, setup: Setup) -> None:
        self._config = setup.config
        self._clock = setup.clock
        self._state_dir = setup.state_dir
        self._site = setup.site
        self._connect = setup.store_link
        self.not_run = ""  # why the last call of `sync` did not run a pass ("" when it did)

    def why_not_configured(self) -> str | None:
        return self._task_missing(self._config.current)

    def _task_missing(self, cfg: AgentConfig) -> str | None:
        if self._connect is None or not self._site:
            return "this agent has no connection to an off-site store"
        return missing_settings(cfg)

    def tasks(self) -> Sequence[Task]:
        from agent.scheduler import Task  # the service's (croniter): not loaded for one pass

        return [Task(TASK, "images.schedule", self._task_missing, self.sync)]

    def commands(self, host: Host) -> Mapping[str, Handler]:
        async def sync_now() -> CommandResult:
            self.not_run = ""
            report = await host.run(TASK, trigger="remote")
            return command_result(report, self.not_run or self.why_not_configured())

        return {"sync-now": sync_now}

    def outside_window(self) -> str | None:
        """Why no pass may start now (outside `upload.window`), or None."""
        window = UploadWindow.parse(self._config.current.text("upload.window"))
        wait = window.seconds_until_open(self._clock.now())
        if wait <= 0:
            return None
        return (
            f"outside the upload window ({window.describe()}); "
            f"it next opens in {max(1, round(wait / 60))} min"
        )

    async def sync(self, trigger: str) -> RunReport | None:
        """One pass over the image folder, uploaded and committed; its report. None, with
        the reason in `not_run`, outside the upload window."""
        self.not_run = self.outside_window() or ""
        if self.not_run:
            log.info("image sync not run (%s): %s", trigger, self.not_run)
            return None
        started = self._clock.now()
        cfg = self._config.current
        settings = SyncSettings(
            folder=cfg.text("images.dir"),
            settle_seconds=int(cfg["images.settle_seconds"]),
            bandwidth_kbps=int(cfg["upload.bandwidth_kbps"]),
            max_pass_minutes=int(cfg["images.max_pass_minutes"]),
            window=UploadWindow.parse(cfg.text("upload.window")),
        )
        try:
            outcome = await self._run(cfg, settings)
        except StoreSafeError as exc:
            log.error("image sync failed: %s", exc.message)
            return RunReport(
                kind=RunKind.IMAGE_SYNC,
                started_at=started,
                finished_at=self._clock.now(),
                outcome=Outcome.FAILED,
                details=ImageSyncDetails(),
                error_class=exc.code,
                error_message=exc.message,
                trigger=trigger,
            )
        return report_of(outcome, trigger=trigger, finished=self._clock.now())

    async def _run(self, cfg: AgentConfig, settings: SyncSettings) -> SyncOutcome:
        assert self._connect is not None
        recovery = FleetPublicKey.parse(cfg.text("upload.recovery_key"))
        index_dir = self._state_dir / INDEX_DIR
        key_file = DataKeyFile(self._state_dir, self._site)
        try:
            index_dir.mkdir(mode=0o700, exist_ok=True)
            keys = key_file.keys()
        except OSError as exc:
            raise StateDirUnusable(
                f"cannot write the image index folder {index_dir} ({exc.strerror})"
            ) from None
        link = self._connect()
        try:
            await site_keys(link, key_file, recovery)
            store = LoopStore(link, asyncio.get_running_loop())
            return await in_background(
                run_sync, index_dir, settings, keys, store, clock=self._clock, sleep=time.sleep
            )
        finally:
            await link.close()


def report_of(outcome: SyncOutcome, *, trigger: str, finished: dt.datetime) -> RunReport:
    """The image-sync RunReport of a pass."""
    r = outcome.result
    failed = r.failed or bool(outcome.error)
    errors = [*r.errors, *([outcome.error] if outcome.error else [])]
    return RunReport(
        kind=RunKind.IMAGE_SYNC,
        started_at=r.started_at,
        finished_at=finished,
        outcome=Outcome.FAILED if failed else Outcome.SUCCEEDED,
        details=details_of(outcome),
        error_class=("images.folder_missing" if r.folder_missing else "images.sync_failed")
        if failed
        else "",
        error_message="; ".join(errors)[:2000] if failed else "",
        trigger=trigger,
    )


def details_of(outcome: SyncOutcome) -> ImageSyncDetails:
    """The pass figures as the report carries them."""
    r, sent = outcome.result, outcome.sent
    return ImageSyncDetails(
        files_scanned=r.files_seen,
        files_copied=r.stored,
        bytes_copied=sent.bytes_sent,
        files_failed=r.skipped_total,
        # A file come back under a name deleted earlier was not there at the last pass:
        # new. A renamed (moved) file is the same file; its old name is not counted
        # deleted, so it counts unchanged.
        files_new=r.new + r.reappeared,
        files_changed=r.changed,
        files_deleted=r.deleted,
        files_unchanged=r.unchanged + r.renamed,
        bytes_read=r.bytes_read,
        chunks_sent=sent.chunks_sent,
        snapshot_id=outcome.snapshot_id,
        folder_missing=r.folder_missing,
        folder_empty=r.folder_empty,
        skipped={reason.value: count for reason, count in r.skipped.items()},
        stable_files=r.stable_before,
        stable_changed=r.stable_changed + r.stable_deleted,
        current_snapshot_id=outcome.current_snapshot_id,
        incomplete=outcome.incomplete,
        summary=outcome.summary,
    )


def sync_summary(report: RunReport) -> str:
    """One line on how a pass ended, for the console."""
    d = report.details
    if report.outcome is not Outcome.SUCCEEDED or not isinstance(d, ImageSyncDetails):
        return f"image sync failed ({report.error_class}): {report.error_message}"
    head = "image sync incomplete" if d.incomplete else "image sync succeeded"
    line = (
        f"{head}: {d.files_scanned:,} files seen, {d.files_copied:,} stored, "
        f"{d.bytes_copied:,} bytes sent"
    )
    if d.incomplete:
        return f"{line}; {d.incomplete}; the next pass goes on"
    if d.current_snapshot_id and not d.snapshot_id:
        return f"{line}; unchanged since snapshot {d.current_snapshot_id[:SHORT_ID]}"
    if d.snapshot_id:
        return f"{line}; snapshot {d.snapshot_id[:SHORT_ID]}"
    return line


def command_result(report: RunReport | None, why_not: str | None) -> CommandResult:
    """How a "sync-now" command ended, in one line."""
    if report is None:
        return CommandResult(
            "rejected", f"not run on this agent: {why_not or 'image sync is not configured'}"
        )
    if report.outcome is Outcome.SUCCEEDED:
        return CommandResult("succeeded", sync_summary(report))
    return CommandResult("failed", report.error_message or "image sync failed")
