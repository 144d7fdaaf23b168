"""The SQLModel tables that hold the fleet's state."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Column, DateTime, Index, String, Text, text
from sqlmodel import Field, SQLModel


def _wall() -> dt.datetime:
    """Wall-clock time for change tracking (not business time, which comes from a Clock)."""
    return dt.datetime.now(dt.UTC)


def _ts(*, nullable: bool = True, index: bool = False) -> object:
    return Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index),
    )


def _big() -> object:
    return Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))


class Site(SQLModel, table=True):
    """One shop: its identity and the latest facts the status function reads."""

    __tablename__ = "sites"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=64)
    group: str = Field(default="default", index=True, max_length=64)
    created_at: dt.datetime = _ts(nullable=False)  # type: ignore[assignment]
    enrolled_at: dt.datetime | None = _ts()  # type: ignore[assignment]
    last_seen_at: dt.datetime | None = _ts()  # type: ignore[assignment]
    agent_version: str = ""
    hostname: str = ""
    os: str = ""
    clock_skew_seconds: float = 0.0
    config_revision_applied: int = 0
    outbox_pending: int = 0
    disks_json: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    firebird_json: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    last_backup_at: dt.datetime | None = _ts()  # type: ignore[assignment]
    last_backup_ok: bool | None = None
    last_backup_error: str = ""
    last_backup_size: int = 0
    last_good_backup_at: dt.datetime | None = _ts()  # type: ignore[assignment]
    last_image_sync_at: dt.datetime | None = _ts()  # type: ignore[assignment]
    last_image_sync_ok: bool | None = None
    last_image_sync_error: str = ""
    # what the newest image-sync pass's figures show (domain/status.image_sync_warning)
    last_image_sync_warning: str = Field(
        default="", sa_column=Column(Text, nullable=False, default="", server_default="")
    )
    last_validation_at: dt.datetime | None = _ts()  # type: ignore[assignment]
    last_validation_errors: int = 0
    last_validation_summary: str = ""
    config_refused: str = ""
    config_refused_revision: int = 0
    # Set when the site's agents were revoked, cleared when an agent enrolls again:
    # a site whose agent is cut off is a problem, not `ok`.
    agent_revoked_at: dt.datetime | None = _ts()  # type: ignore[assignment]
    # The wrong-database guard (server/domain/figures.py): the accepted baseline's
    # figures (JSON, "" before the first good backup), the open change ("" when none)
    # and the finish time of the newest good backup compared (older ones are ignored).
    figures_baseline_json: str = Field(
        default="", sa_column=Column(Text, nullable=False, default="")
    )
    figures_change: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    figures_checked_at: dt.datetime | None = _ts()  # type: ignore[assignment]
    # The newest good backup run whose file the agent found damaged (its finish time).
    damaged_backup_at: dt.datetime | None = _ts()  # type: ignore[assignment]
    damaged_backup_file: str = ""
    # The newest database copy in the off-site store (its snapshot's created_at), the
    # backup run it copies and that run's finish time (None until the run is known), and
    # the sealed bytes the upload runs of that backup sent vs its compressed file size.
    last_offsite_at: dt.datetime | None = _ts()  # type: ignore[assignment]
    last_offsite_backup_run_id: str = Field(default="", max_length=64)
    last_offsite_backup_at: dt.datetime | None = _ts()  # type: ignore[assignment]
    last_offsite_bytes_sent: int = _big()  # type: ignore[assignment]
    last_offsite_backup_size: int = _big()  # type: ignore[assignment]
    # Restore drills (runs of kind drill): the newest, its outcome, the newest that passed.
    last_drill_at: dt.datetime | None = _ts()  # type: ignore[assignment]
    last_drill_outcome: str = Field(default="", max_length=16)
    last_drill_ok_at: dt.datetime | None = _ts()  # type: ignore[assignment]
    # The newest store check and the damage known since (store_damage rows): how many
    # chunks, and the backup runs and snapshots they break (a short text for status).
    last_store_check_at: dt.datetime | None = _ts()  # type: ignore[assignment]
    store_damaged_chunks: int = _big()  # type: ignore[assignment]
    store_damage_summary: str = Field(
        default="", sa_column=Column(Text, nullable=False, default="", server_default="")
    )
    # Where the next sampled store check starts on the circle of chunk ids (16 hex digits,
    # "" before the first: domain/storecheck.py).
    store_check_cursor: str = Field(default="", max_length=16)
    # Bumped by every insert and update (SQLAlchemy default/onupdate): the fleet
    # view's cache refreshes only the rows changed since it last looked.
    updated_at: dt.datetime | None = Field(
        default=None,
        sa_column=Column(
            DateTime(timezone=True), nullable=True, index=True, default=_wall, onupdate=_wall
        ),
    )


class Agent(SQLModel, table=True):
    """An enrolled agent's credential, stored hashed."""

    __tablename__ = "agents"

    id: str = Field(primary_key=True, max_length=32)
    site_id: int = Field(foreign_key="sites.id", index=True)
    secret_hash: str = Field(max_length=64)
    hostname: str = ""
    created_at: dt.datetime = _ts(nullable=False)  # type: ignore[assignment]
    revoked_at: dt.datetime | None = _ts(index=True)  # type: ignore[assignment]


class EnrollmentToken(SQLModel, table=True):
    """A one-time, expiring token that lets one agent join one site."""

    __tablename__ = "enrollment_tokens"

    id: str = Field(primary_key=True, max_length=32)
    site: str = Field(max_length=64)
    group: str = Field(default="", max_length=64)
    secret_hash: str = Field(max_length=64)
    created_by: str = ""
    created_at: dt.datetime = _ts(nullable=False)  # type: ignore[assignment]
    expires_at: dt.datetime = _ts(nullable=False)  # type: ignore[assignment]
    used_at: dt.datetime | None = _ts()  # type: ignore[assignment]


class AdminToken(SQLModel, table=True):
    """A token that lets a technician drive the fleet with the admin CLI.

    The name of an active (unrevoked) token is unique: tokens are revoked by name.
    """

    __tablename__ = "admin_tokens"
    __table_args__ = (
        Index(
            "ux_admin_tokens_active_name",
            "name",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=64)
    secret_hash: str = Field(max_length=64)
    created_at: dt.datetime = _ts(nullable=False)  # type: ignore[assignment]
    created_by: str = Field(default="", max_length=64)
    revoked_at: dt.datetime | None = _ts()  # type: ignore[assignment]
    revoked_by: str = Field(default="", max_length=64)


class Run(SQLModel, table=True):
    """One finished job reported by an agent, stored once by its id."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_site_finished", "site_id", "finished_at"),
        Index("ix_runs_site_backup_file", "site_id", "backup_file"),
        Index("ix_runs_site_backup_run", "site_id", "backup_run_id"),
    )

    id: str = Field(primary_key=True, max_length=64)
    site_id: int = Field(foreign_key="sites.id")
    kind: str = Field(max_length=16)
    started_at: dt.datetime = _ts(nullable=False)  # type: ignore[assignment]
    finished_at: dt.datetime = _ts(nullable=False)  # type: ignore[assignment]
    outcome: str = Field(max_length=16)
    verification: str = Field(default="", max_length=16)
    error_class: str = Field(default="", max_length=64)
    error_message: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    trigger: str = Field(default="", max_length=16)
    received_at: dt.datetime = _ts(nullable=False)  # type: ignore[assignment]
    details_json: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    # A backup run's data file (base name) and what became of it: kept, pruned, damaged,
    # missing ("" for runs without a file).
    backup_file: str = Field(default="", max_length=200)
    file_state: str = Field(default="", max_length=16)
    # The backup run an upload or a drill run is about ("" for other kinds).
    backup_run_id: str = Field(default="", max_length=64)


class AuditEntry(SQLModel, table=True):
    """One admin action: who did what to what, and when."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: dt.datetime = _ts(nullable=False, index=True)  # type: ignore[assignment]
    actor: str = Field(max_length=64)
    action: str = Field(max_length=64)
    target: str = Field(default="", max_length=128)
    details: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class ConfigValue(SQLModel, table=True):
    """One key set on one layer (fleet, a group or a site); secrets encrypted."""

    __tablename__ = "config_values"

    scope: str = Field(primary_key=True, max_length=8)
    target: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=64)
    value_json: str = Field(sa_column=Column(Text, nullable=False))
    revision: int


class ConfigRevision(SQLModel, table=True):
    """One configuration change: who changed which keys on which layer, and when."""

    __tablename__ = "config_revisions"
    __table_args__ = (Index("ix_config_revisions_layer", "scope", "target"),)

    revision: int | None = Field(default=None, primary_key=True)
    scope: str = Field(max_length=8)
    target: str = Field(default="", max_length=64)
    author: str = Field(max_length=64)
    at: dt.datetime = _ts(nullable=False)  # type: ignore[assignment]
    changes_json: str = Field(sa_column=Column(Text, nullable=False))


class Command(SQLModel, table=True):
    """A remote command for one site's agent, and how it ended."""

    __tablename__ = "commands"
    __table_args__ = (Index("ix_commands_site_created", "site_id", "created_at"),)

    id: str = Field(primary_key=True, max_length=36)
    site_id: int = Field(foreign_key="sites.id")
    kind: str = Field(max_length=16)
    created_at: dt.datetime = _ts(nullable=False)  # type: ignore[assignment]
    created_by: str = Field(max_length=64)
    delivered_at: dt.datetime | None = _ts()  # type: ignore[assignment]
    finished_at: dt.datetime | None = _ts()  # type: ignore[assignment]
    outcome: str = Field(default="", max_length=16)
    message: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class AlertState(SQLModel, table=True):
    """The status last alerted for a site that is not ok (no row: ok, nothing owed).

    `token` changes with every update: a replica changes the row only if it still
    holds the token it read, so one replica wins each transition.
    """

    __tablename__ = "alert_states"

    site_id: int = Field(primary_key=True, foreign_key="sites.id")
    status: str = Field(max_length=16)
    since: dt.datetime = _ts(nullable=False)  # type: ignore[assignment]
    notified_at: dt.datetime = _ts(nullable=False)  # type: ignore[assignment]
    token: str = Field(max_length=32)


class AlertDelivery(SQLModel, table=True):
    """One notification to one destination: queued, retried, delivered or failed."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (Index("ix_alert_deliveries_due", "state", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    created_at: dt.datetime = _ts(nullable=False, index=True)  # type: ignore[assignment]
    site: str = Field(default="", index=True, max_length=64)  # empty for a digest
    kind: str = Field(max_length=16)  # transition | reminder | resolved | digest
    status_from: str = Field(default="", max_length=16)
    status_to: str = Field(default="", max_length=16)
    channel: str = Field(max_length=16)  # webhook | slack | teams | email
    destination: str = Field(default="", max_length=255)  # host only, for display
    target_sealed: str = Field(sa_column=Column(Text, nullable=False))
    message_json: str = Field(sa_column=Column(Text, nullable=False))
    state: str = Field(default="pending", max_length=16)  # pending | delivered | failed
    attempts: int = 0
    next_attempt_at: dt.datetime = _ts(nullable=False)  # type: ignore[assignment]
    claimed_until: dt.datetime | None = _ts()  # type: ignore[assignment]
    last_error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    delivered_at: dt.datetime | None = _ts()  # type: ignore[assignment]


class AlertDigest(SQLModel, table=True):
    """The daily digest of one UTC day: inserted once, by the replica that sends it."""

    __tablename__ = "alert_digests"

    day: str = Field(primary_key=True, max_length=10)
    sent_at: dt.datetime = _ts(nullable=False)  # type: ignore[assignment]
    sites: int = 0


class SiteKey(SQLModel, table=True):
    """A site's data key sealed to the fleet recovery key (create-only; never changed)."""

    __tablename__ = "site_keys"

    site_id: int = Field(primary_key=True, foreign_key="sites.id")
    data_key_id: str = Field(primary_key=True, max_length=16)
    sealed_key: str = Field(sa_column=Column(Text, nullable=False))
    recovery_key_fingerprint: str = Field(max_length=64)
    created_at: dt.datetime = _ts(nullable=False)  # type: ignore[assignment]


class StoreChunk(SQLModel, table=True):
    """The blob index: a sealed chunk of a site, durable in the store when its row exists."""

    __tablename__ = "store_chunks"

    site_id: int = Field(primary_key=True, foreign_key="sites.id")
    chunk_id: str = Field(primary_key=True, max_length=64)
    size: int = _big()  # type: ignore[assignment]
    # The hex digest of the sealed bytes, of the algorithm `digest_algorithm` names: blake3
    # for chunks of current agents, sha256 for those of agents before BLAKE3 (the column
    # is older than BLAKE3, hence its name; the store check hashes with the named one).
    sha256: str = Field(max_length=64)
    digest_algorithm: str = Field(
        default="sha256",
        sa_column=Column(String(16), nullable=False, default="sha256", server_default="sha256"),
    )
    stored_at: dt.datetime = _ts(nullable=False)  # type: ignore[assignment]
    # Garbage collection (server/services/store_gc.py): set when a run found the chunk
    # unreferenced (cleared when a commit or an upload uses it again); `state` becomes
    # "deleting" just before the blob is deleted, and the row goes after the blob.
    condemned_at: dt.datetime | None = _ts()  # type: ignore[assignment]
    state: str = Field(
        default="stored",
        sa_column=Column(String(16), nullable=False, default="stored", server_default="stored"),
    )


class StoreSnapshot(SQLModel, table=True):
    """A committed snapshot: its sealed record and reference list are in the store."""

    __tablename__ = "snapshots"
    __table_args__ = (Index("ix_snapshots_site_kind_created", "site_id", "kind", "created_at"),)

    site_id: int = Field(primary_key=True, foreign_key="sites.id")
    snapshot_id: str = Field(primary_key=True, max_length=64)
    kind: str = Field(max_length=16)  # images | database
    created_at: dt.datetime = _ts(nullable=False)  # type: ignore[assignment]
    committed_at: dt.datetime = _ts(nullable=False)  # type: ignore[assignment]
    entries: int = _big()  # type: ignore[assignment]
    size: int = _big()  # type: ignore[assignment]
    data_key_id: str = Field(max_length=16)
    backup_run_id: str = Field(default="", max_length=64)
    chunks: int = _big()  # type: ignore[assignment]
    stored_bytes: int = _big()  # type: ignore[assignment]
    record_sha256: str = Field(max_length=64)


class MaintenanceLease(SQLModel, table=True):
    """Who runs a named maintenance job now: one owner at a time across replicas.

    Taken with a conditional UPDATE (or the first INSERT) when free or expired, and
    renewed by its owner while the job runs.
    """

    __tablename__ = "maintenance_lease"

    name: str = Field(primary_key=True, max_length=32)
    owner: str = Field(max_length=128)
    expires_at: dt.datetime = _ts(nullable=False)  # type: ignore[assignment]


class MaintenanceRun(SQLModel, table=True):
    """One run of the off-site store's maintenance (retention, then garbage collection)."""

    __tablename__ = "maintenance_runs"

    id: int | None = Field(default=None, primary_key=True)
    started_at: dt.datetime = _ts(nullable=False, index=True)  # type: ignore[assignment]
    finished_at: dt.datetime = _ts(nullable=False)  # type: ignore[assignment]
    owner: str = Field(max_length=128)
    dry_run: bool = False
    outcome: str = Field(max_length=16)  # succeeded | failed
    summary_json: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class StoreDamage(SQLModel, table=True):
    """A chunk of a site that a store check found damaged (its bytes do not match the
    index's sha256) or missing; removed when a later check reads it fine."""

    __tablename__ = "store_damage"

    site_id: int = Field(primary_key=True, foreign_key="sites.id")
    chunk_id: str = Field(primary_key=True, max_length=64)
    state: str = Field(max_length=16)  # damaged | missing
    found_at: dt.datetime = _ts(nullable=False)  # type: ignore[assignment]
