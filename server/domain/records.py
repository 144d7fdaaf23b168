"""The server's domain records: what services and state pass between them."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from server.domain.status import Disk, Health, SiteStatus


@dataclasses.dataclass(frozen=True)
class AgentIdentity:
    """Who an authenticated agent call comes from."""

    agent_id: str
    site_id: int
    site: str
    group: str = "default"


@dataclasses.dataclass(frozen=True)
class AdminIdentity:
    """Who an authenticated admin call comes from."""

    token_id: str
    name: str


@dataclasses.dataclass(frozen=True)
class AdminTokenRecord:
    """An admin token as listed: never its secret or its hash."""

    id: str
    name: str
    created_at: dt.datetime
    created_by: str = ""
    revoked_at: dt.datetime | None = None
    revoked_by: str = ""

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclasses.dataclass(frozen=True)
class CheckInFacts:
    agent_version: str
    hostname: str
    os: str
    agent_time: dt.datetime | None
    config_revision: int
    disks: tuple[Disk, ...]
    firebird: dict[str, Any] | None
    outbox_pending: int


FILE_STATES = ("kept", "pruned", "damaged", "missing")


@dataclasses.dataclass(frozen=True)
class FileChange:
    """An agent says an earlier backup run's file changed state (pruned, damaged, missing)."""

    file: str  # the backup's data file name in backup.dir, as its run reported it
    state: str  # one of FILE_STATES
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """A run report as the server stores it; `details` is the JSON form of the details."""

    id: str
    kind: str
    started_at: dt.datetime
    finished_at: dt.datetime
    outcome: str
    verification: str
    error_class: str
    error_message: str
    trigger: str
    details: dict[str, Any]
    site: str = ""
    received_at: dt.datetime | None = None
    file_changes: tuple[FileChange, ...] = ()
    file_state: str = ""  # a stored backup run's file: one of FILE_STATES, "" without a file

    @property
    def backup_file(self) -> str:
        """The base name of this backup run's data file ("" for none), without `.bad`."""
        if self.kind != "backup":
            return ""
        path = str(self.details.get("backup", {}).get("file", "") or "")
        name = path.replace("\\", "/").rsplit("/", 1)[-1]
        return name.removesuffix(".bad").removesuffix(".unverified")

    @property
    def good(self) -> bool:
        """A backup counts only once its verification passed."""
        return self.outcome == "succeeded" and self.verification == "passed"


@dataclasses.dataclass(frozen=True)
class SiteRow:
    """One site with its stored facts, ready for the status function."""

    id: int
    name: str
    group: str
    hostname: str
    os: str
    agent_version: str
    enrolled_at: dt.datetime | None
    last_seen_at: dt.datetime | None
    last_backup_at: dt.datetime | None
    last_backup_ok: bool | None
    last_backup_error: str
    last_backup_size: int
    last_good_backup_at: dt.datetime | None
    last_image_sync_at: dt.datetime | None
    last_image_sync_ok: bool | None
    last_image_sync_error: str
    last_validation_errors: int
    last_validation_summary: str
    clock_skew_seconds: float
    config_revision_applied: int
    outbox_pending: int
    disks: tuple[Disk, ...]
    firebird: dict[str, Any] | None
    config_refused: str = ""
    config_refused_revision: int = 0
    agent_revoked_at: dt.datetime | None = None
    figures_change: str = ""
    damaged_backup_at: dt.datetime | None = None
    damaged_backup_file: str = ""
    last_image_sync_warning: str = ""
    last_offsite_at: dt.datetime | None = None
    last_offsite_backup_run_id: str = ""
    last_offsite_backup_at: dt.datetime | None = None
    last_offsite_bytes_sent: int = 0
    last_offsite_backup_size: int = 0
    last_drill_at: dt.datetime | None = None
    last_drill_outcome: str = ""
    last_drill_ok_at: dt.datetime | None = None
    last_store_check_at: dt.datetime | None = None
    store_damaged_chunks: int = 0
    store_damage_summary: str = ""

    @property
    def health(self) -> Health | None:
        return Health.of(self.firebird) if self.firebird else None


@dataclasses.dataclass(frozen=True)
class SiteView:
    """A site's row with its computed status and the configuration revision it should run."""

    row: SiteRow
    status: SiteStatus
    config_revision_desired: int = 0


@dataclasses.dataclass(frozen=True)
class FiguresAccepted:
    """A technician accepted a good backup's figures as the site's baseline
    (server/domain/figures.py): that run, and the change it cleared ("" when none was open)."""

    run_id: str
    cleared: str


@dataclasses.dataclass(frozen=True)
class AuditRecord:
    at: dt.datetime
    actor: str
    action: str
    target: str
    details: str = ""


@dataclasses.dataclass(frozen=True)
class LayerValue:
    """One stored key on one layer; `value_json` may hold an encrypted secret."""

    scope: str
    target: str
    key: str
    value_json: str
    revision: int


@dataclasses.dataclass(frozen=True)
class RevisionRecord:
    revision: int
    scope: str
    target: str
    author: str
    at: dt.datetime
    changes: dict[str, str]


@dataclasses.dataclass(frozen=True)
class CommandRecord:
    id: str
    site: str
    site_id: int
    kind: str
    created_at: dt.datetime
    created_by: str
    delivered_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    outcome: str = ""
    message: str = ""

    @property
    def state(self) -> str:
        if self.outcome:
            return self.outcome
        return "delivered" if self.delivered_at else "queued"
