"""The plain records the admin CLI works with, free of gRPC and protobuf.

`cli.client.convert` builds them from server answers; `cli.output` renders them.
Times are aware UTC datetimes, and `None` means "never". These are the CLI's
only definitions of its domain types (the agent and the server have their own,
on their side of the wire); a default means what it means on the server.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

STATUSES: tuple[str, ...] = ("ok", "warning", "stale", "failing", "never", "offline")
"""Every site status the server computes, from best to worst by check severity."""

KINDS: tuple[str, ...] = (
    "backup",
    "image-sync",
    "upload",
    "validation",
    "file-check",
    "drill",
    "store-check",
)
"""Every kind of run: those an agent reports, restore drills the CLI records, store checks."""

FILE_STATES: tuple[str, ...] = ("kept", "pruned", "damaged", "missing")
"""Where a backup run's file stands now."""


@dataclass(frozen=True, slots=True)
class SiteSummary:
    """One row of the fleet view, with the status the server computed."""

    site: str
    group: str
    status: str
    last_good_backup_at: dt.datetime | None = None
    last_backup_at: dt.datetime | None = None
    last_image_sync_at: dt.datetime | None = None
    last_seen_at: dt.datetime | None = None
    config_revision_desired: int = 0
    config_revision_applied: int = 0
    agent_version: str = ""
    problems: tuple[str, ...] = ()
    hostname: str = ""
    # the newest database copy in the off-site store, its backup run, and the last
    # upload's bytes sent vs that backup's file size
    last_offsite_at: dt.datetime | None = None
    last_offsite_backup_run_id: str = ""
    last_offsite_bytes_sent: int = 0
    last_offsite_backup_size: int = 0
    # the newest passed restore drill ("proven restorable"), and the newest drill at all
    last_drill_ok_at: dt.datetime | None = None
    last_drill_at: dt.datetime | None = None
    last_drill_outcome: str = ""
    # the newest store check and the damaged + missing chunks it found
    last_store_check_at: dt.datetime | None = None
    store_damaged_chunks: int = 0


@dataclass(frozen=True, slots=True)
class Disk:
    """Space on one volume an agent watches (`label`: data, backup or state), in bytes."""

    label: str
    path: str
    total_bytes: int
    free_bytes: int


@dataclass(frozen=True, slots=True)
class FirebirdHealth:
    """Figures from the live database's header and monitoring tables.

    Defaults are the server's reading of a figure the agent did not tell: forced
    writes count as on (no "forced writes off" problem without a reading), and
    `backup_state` 0 is normal (1 stalled, 2 merge; MON$BACKUP_STATE).
    """

    oit: int = 0
    oat: int = 0
    ost: int = 0
    next_transaction: int = 0
    sweep_interval: int = 0
    forced_writes: bool = True
    page_size: int = 0
    ods: str = ""
    size_bytes: int = 0
    backup_state: int = 0
    server_version: str = ""


@dataclass(frozen=True, slots=True)
class Run:
    """One finished job an agent reported.

    `details` holds the kind-specific figures with the proto field names
    (e.g. `verification`, `size_compressed` for a backup, `files_copied` for an
    image sync), ready for JSON.
    """

    id: str
    site: str
    kind: str
    outcome: str
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    received_at: dt.datetime | None = None
    trigger: str = ""
    error_class: str = ""
    error_message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    # a backup run's file: kept, pruned, damaged or missing (None: the run has no file)
    file_state: str | None = None


@dataclass(frozen=True, slots=True)
class SiteDetail:
    """One site in detail: its summary plus what its agent last told."""

    summary: SiteSummary
    os: str = ""
    disks: tuple[Disk, ...] = ()
    firebird: FirebirdHealth | None = None
    clock_skew_seconds: float = 0.0
    enrolled_at: dt.datetime | None = None
    outbox_pending: int = 0
    last_backup: Run | None = None
    active_agents: int = 0


@dataclass(frozen=True, slots=True)
class EnrollmentToken:
    """A one-time token an agent trades for its own credential."""

    site: str
    group: str
    token: str
    expires_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One admin action as the server recorded it."""

    at: dt.datetime | None
    actor: str
    action: str
    target: str
    details: str


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict of `storesafe check`, in monitoring-plugin terms.

    `state` is OK, WARNING, CRITICAL or UNKNOWN with `exit_code` 0, 1, 2 or 3;
    `summary` is the one line a monitoring system shows; `attention` lists the
    sites that are not ok, worst first.
    """

    state: str
    exit_code: int
    summary: str
    counts: dict[str, int] = field(default_factory=dict)
    attention: tuple[SiteSummary, ...] = ()


SCOPES: tuple[str, ...] = ("fleet", "group", "site")
"""The configuration layers, lowest first; a later layer wins."""

ROLLOUT_STATES: tuple[str, ...] = ("applied", "pending", "refused", "offline", "no agent")
"""Where a site stands with the configuration revision it should run."""

COMMAND_KINDS: tuple[str, ...] = ("backup-now", "sync-now")
"""The remote commands an agent runs on request."""

COMMAND_STATES: tuple[str, ...] = (
    "queued",
    "delivered",
    "succeeded",
    "failed",
    "rejected",
    "expired",
)
"""The life of a remote command, from queued to its outcome."""


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """What `config set` did: the new revision (0: nothing changed) and the keys it changed."""

    layer: str
    revision: int
    changed: tuple[str, ...] = ()
    sites: int | None = None  # how many sites the layer reaches now (None: not told)


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One effective key of a site; `layer` is default, fleet, group:G or site:S.

    Secret values arrive masked from the server and are never unmasked.
    """

    key: str
    value: str
    layer: str
    secret: bool = False


@dataclass(frozen=True, slots=True)
class SiteConfig:
    """A site's effective configuration and where its agent stands with it."""

    site: str
    desired_revision: int
    applied_revision: int
    entries: tuple[ConfigEntry, ...] = ()
    refused: str = ""


@dataclass(frozen=True, slots=True)
class ConfigRevision:
    """One configuration change: which layer, who, when, and key -> new value (masked)."""

    revision: int
    scope: str
    target: str
    author: str
    at: dt.datetime | None
    changes: dict[str, str] = field(default_factory=dict)

    @property
    def layer(self) -> str:
        """`fleet`, `group:G` or `site:S`."""
        return f"{self.scope}:{self.target}" if self.target else self.scope


@dataclass(frozen=True, slots=True)
class RolloutRow:
    """One site in the rollout view: desired vs applied revision, and any refusal."""

    site: str
    group: str
    desired_revision: int
    applied_revision: int
    state: str
    refused: str = ""
    last_seen_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Command:
    """A remote command (backup-now, sync-now) and how far it got."""

    id: str
    site: str
    kind: str
    state: str
    message: str = ""
    created_at: dt.datetime | None = None
    created_by: str = ""
    delivered_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class AdminToken:
    """An admin token as the server lists it: its name and id, never its secret."""

    name: str
    id: str
    created_at: dt.datetime | None = None
    created_by: str = ""
    revoked_at: dt.datetime | None = None
    revoked_by: str = ""

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class AlertDelivery:
    """One alert notification to one destination, and how its delivery went."""

    id: int
    site: str
    kind: str
    status_from: str
    status_to: str
    channel: str
    destination: str
    attempts: int
    state: str
    last_error: str = ""
    created_at: dt.datetime | None = None
    next_attempt_at: dt.datetime | None = None
    delivered_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class AlertList:
    """The newest deliveries, and totals over all of them."""

    deliveries: list[AlertDelivery]
    pending: int = 0
    delivered: int = 0
    failed: int = 0
    errors: int = 0


SNAPSHOT_KINDS: tuple[str, ...] = ("images", "database")
"""Every kind of snapshot in the off-site store."""


@dataclass(frozen=True, slots=True)
class SnapshotSummary:
    """One snapshot as the server knows it (it cannot read the sealed record)."""

    snapshot_id: str
    kind: str
    created_at: dt.datetime | None
    committed_at: dt.datetime | None
    entries: int
    size: int
    data_key_id: str
    backup_run_id: str = ""
    chunks: int = 0
    stored_bytes: int = 0


@dataclass(frozen=True, slots=True)
class SealedSnapshotRecord:
    """A snapshot and its sealed record, for a restore."""

    snapshot: SnapshotSummary
    record: bytes


@dataclass(frozen=True, slots=True)
class SiteDataKey:
    """One of a site's data keys, sealed to the fleet recovery key (`ssdk1:...`)."""

    data_key_id: str
    sealed_key: str
    recovery_key_fingerprint: str
    created_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class DrillReport:
    """A restore drill to record on the server (a run of kind `drill`), with its figures."""

    id: str
    site: str
    started_at: dt.datetime
    finished_at: dt.datetime
    outcome: str  # succeeded or failed
    trigger: str  # "restore" or "drill"
    snapshot_id: str = ""
    backup_run_id: str = ""
    bytes_fetched: int = 0
    backup_bytes: int = 0
    checksum_ok: bool = False
    restored: bool = False
    validation_errors: int = 0
    table_counts: dict[str, int] = field(default_factory=dict)
    host: str = ""
    fetch_seconds: float = 0.0
    restore_seconds: float = 0.0
    error_class: str = ""
    error_message: str = ""


@dataclass(frozen=True, slots=True)
class StoreCheckUpdate:
    """Progress of a store check for one site; `result` is set once the site is done."""

    site: str
    chunks_checked: int = 0
    chunks_total: int = 0
    bytes_checked: int = 0
    result: Run | None = None
