"""The one function that turns a site's stored facts into its status and problems."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping
from typing import Any, NamedTuple


class Status(enum.StrEnum):
    OK = "ok"
    WARNING = "warning"
    STALE = "stale"
    FAILING = "failing"
    NEVER = "never"
    OFFLINE = "offline"


STABLE_MIN_FILES = 100
"""A pass judges the share of stable images it changed only from this many on."""
STABLE_CHANGED_SHARE = 0.30
"""A pass that changed or deleted this share of the stable images is a problem."""

# Precedence when several hold, first wins.
PRECEDENCE = (Status.OFFLINE, Status.NEVER, Status.FAILING, Status.STALE, Status.WARNING)


@dataclasses.dataclass(frozen=True)
class StatusPolicy:
    """Thresholds; per-site values come from the effective configuration."""

    stale_after_hours: float = 26.0
    offline_after_minutes: float = 15.0
    image_sync_stale_after_hours: float = 26.0
    # images.dir is set for the site: only then do image-sync runs make problems
    image_sync_configured: bool = False
    # upload.enabled is on for the site: only then is a missing or late off-site copy a problem
    upload_enabled: bool = False
    offsite_lag_hours: float = 30.0
    disk_free_min_fraction: float = 0.10
    clock_skew_max_seconds: float = 300.0
    oit_gap_max: int = 50_000
    oat_gap_max: int = 50_000
    outbox_pending_max: int = 50
    minimum_agent_version: str = ""


class Disk(NamedTuple):
    """A volume as of the last check-in (a tuple: the fleet view builds 10,000s of them)."""

    label: str
    path: str
    total_bytes: int
    free_bytes: int


@dataclasses.dataclass(frozen=True)
class Health:
    """What the status reads of the live database's Firebird health (the server's one
    definition; a field the agent did not send takes its default here)."""

    oit: int = 0
    oat: int = 0
    next_transaction: int = 0
    forced_writes: bool = True
    backup_state: int = 0

    @classmethod
    def of(cls, firebird: Mapping[str, Any]) -> Health:
        """The health in a check-in's stored JSON form (64-bit integers as text)."""
        default = _NO_HEALTH
        return cls(
            oit=int(firebird.get("oit", default.oit)),
            oat=int(firebird.get("oat", default.oat)),
            next_transaction=int(firebird.get("next_transaction", default.next_transaction)),
            forced_writes=bool(firebird.get("forced_writes", default.forced_writes)),
            backup_state=int(firebird.get("backup_state", default.backup_state)),
        )


_NO_HEALTH = Health()


@dataclasses.dataclass(frozen=True)
class SiteFacts:
    """Everything the status depends on, as stored for one site."""

    site: str = ""
    agent_revoked_at: dt.datetime | None = None
    enrolled_at: dt.datetime | None = None
    last_seen_at: dt.datetime | None = None
    last_backup_at: dt.datetime | None = None
    last_backup_ok: bool | None = None
    last_backup_error: str = ""
    last_good_backup_at: dt.datetime | None = None
    last_backup_size: int = 0
    last_image_sync_at: dt.datetime | None = None
    last_image_sync_ok: bool | None = None
    last_image_sync_error: str = ""
    last_image_sync_warning: str = ""
    last_validation_errors: int = 0
    last_validation_summary: str = ""
    clock_skew_seconds: float = 0.0
    agent_version: str = ""
    outbox_pending: int = 0
    config_refused: str = ""
    disks: tuple[Disk, ...] = ()
    health: Health | None = None
    figures_change: str = ""  # an unaccepted sharp change of figures (domain/figures.py)
    # the newest good backup run whose file the agent found damaged, and that file
    damaged_backup_at: dt.datetime | None = None
    damaged_backup_file: str = ""
    # the newest off-site copy (snapshot time) and the finish time of the backup it copies
    # (None while that backup's report has not arrived)
    last_offsite_at: dt.datetime | None = None
    last_offsite_backup_at: dt.datetime | None = None
    # damaged or missing chunks the store checks know of, and what they break
    store_damaged_chunks: int = 0
    store_damage_summary: str = ""


@dataclasses.dataclass(frozen=True)
class SiteStatus:
    status: Status
    problems: tuple[str, ...]


def compute_status(facts: SiteFacts, policy: StatusPolicy, now: dt.datetime) -> SiteStatus:
    """Return the site's status by the DESIGN.md rules and every reason it is not ok."""
    found: dict[Status, list[str]] = {s: [] for s in PRECEDENCE}
    _offline(facts, policy, now, found[Status.OFFLINE])
    if facts.last_good_backup_at is None:
        found[Status.NEVER].append("no verified backup yet")
    _failing(facts, found[Status.FAILING])
    if facts.last_good_backup_at is not None:
        age = now - facts.last_good_backup_at
        if age > dt.timedelta(hours=policy.stale_after_hours):
            found[Status.STALE].append(
                f"last verified backup {_ago(age)} ago (limit {policy.stale_after_hours:g} h)"
            )
    _warnings(facts, policy, now, found[Status.WARNING])
    _figures_changed(facts, found[Status.WARNING])
    _damaged_backup(facts, found[Status.WARNING])
    _offsite(facts, policy, found[Status.WARNING])
    _store_damage(facts, found[Status.WARNING])
    status = next((s for s in PRECEDENCE if found[s]), Status.OK)
    problems = tuple(p for s in PRECEDENCE for p in found[s])
    return SiteStatus(status, problems)


def _offline(facts: SiteFacts, policy: StatusPolicy, now: dt.datetime, out: list[str]) -> None:
    if facts.enrolled_at is None:
        return  # no agent yet: "never" says it
    seen = facts.last_seen_at or facts.enrolled_at
    age = now - seen
    if age > dt.timedelta(minutes=policy.offline_after_minutes):
        out.append(f"agent not seen for {_ago(age)} (limit {policy.offline_after_minutes:g} min)")


def _failing(facts: SiteFacts, out: list[str]) -> None:
    if facts.last_backup_ok is False:
        reason = facts.last_backup_error or "unknown error"
        out.append(f"latest backup failed: {reason}")
    if facts.last_validation_errors > 0:
        summary = f": {facts.last_validation_summary}" if facts.last_validation_summary else ""
        out.append(
            f"live database validation found {facts.last_validation_errors} error(s){summary}"
        )


def _warnings(facts: SiteFacts, policy: StatusPolicy, now: dt.datetime, out: list[str]) -> None:
    if facts.enrolled_at is None:
        out.append("no agent enrolled yet")
    if facts.agent_revoked_at is not None:
        out.append(revoked_problem(facts.site, facts.agent_revoked_at))
    if policy.image_sync_configured:
        _image_sync(facts, policy, now, out)
    for disk in facts.disks:
        if disk.total_bytes and disk.free_bytes < disk.total_bytes * policy.disk_free_min_fraction:
            out.append(f"disk nearly full on {disk.label} ({_gib(disk.free_bytes)} free)")
        elif disk.label == "backup" and 0 < disk.free_bytes < 2 * facts.last_backup_size:
            out.append(f"backup disk has {_gib(disk.free_bytes)} free, under twice the last backup")
    if facts.config_refused:
        out.append(f"configuration refused: {facts.config_refused}")
    if abs(facts.clock_skew_seconds) > policy.clock_skew_max_seconds:
        out.append(f"agent clock off by {facts.clock_skew_seconds:+.0f} s")
    if (
        policy.minimum_agent_version
        and facts.agent_version
        and _older(facts.agent_version, policy.minimum_agent_version)
    ):
        out.append(
            f"agent {facts.agent_version} is out of date (want {policy.minimum_agent_version})"
        )
    if facts.outbox_pending > policy.outbox_pending_max:
        out.append(f"{facts.outbox_pending} reports waiting in the agent's outbox")
    _health(facts.health, policy, out)


def _image_sync(facts: SiteFacts, policy: StatusPolicy, now: dt.datetime, out: list[str]) -> None:
    if facts.last_image_sync_ok is False:
        out.append(f"image sync failing: {facts.last_image_sync_error or 'unknown error'}")
    elif facts.last_image_sync_at is not None:
        age = now - facts.last_image_sync_at
        limit = policy.image_sync_stale_after_hours
        if age > dt.timedelta(hours=limit):
            out.append(f"last image sync {_ago(age)} ago (limit {limit:g} h)")
    if facts.last_image_sync_warning:
        out.append(facts.last_image_sync_warning)


def image_sync_warning(details: Mapping[str, Any]) -> str:
    """The problem the figures of an image-sync pass show, "" for none (`details` in
    its stored JSON form, 64-bit integers as text)."""
    if details.get("folder_missing"):
        return "the image folder is missing"
    if details.get("folder_empty"):
        return "the image folder is suddenly empty (the sync before saw files)"
    stable = int(details.get("stable_files", 0))
    changed = int(details.get("stable_changed", 0))
    if stable >= STABLE_MIN_FILES and changed >= stable * STABLE_CHANGED_SHARE:
        return (
            f"image sync found {changed} of {stable} long-unchanged images changed or "
            f"deleted ({changed / stable:.0%}); check the folder before the old "
            "snapshots expire"
        )
    return ""


def revoked_problem(site: str, at: dt.datetime) -> str:
    """The problem of a site whose agent was revoked and has not enrolled again."""
    name = site or "SITE"
    return (
        f"agent revoked at {at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC; re-enroll with "
        f"`storesafe token create --site {name}`, then `storesafe-agent enroll` on its PC"
    )


def _figures_changed(facts: SiteFacts, out: list[str]) -> None:
    """A good backup whose figures differ sharply from the accepted ones: another database?"""
    if facts.figures_change:
        out.append(facts.figures_change)


def _damaged_backup(facts: SiteFacts, out: list[str]) -> None:
    """The newest good backup no longer matches its checksum (or no longer restores)."""
    damaged, good = facts.damaged_backup_at, facts.last_good_backup_at
    if damaged is not None and (good is None or damaged >= good):
        out.append(
            f"newest good backup {facts.damaged_backup_file} is damaged (no longer matches "
            "its checksum or no longer restores); take a new backup"
        )


def _offsite(facts: SiteFacts, policy: StatusPolicy, out: list[str]) -> None:
    """With uploads on, a good backup must leave the shop, and the off-site copy must not
    lag the last good backup by more than the limit."""
    good = facts.last_good_backup_at
    if not policy.upload_enabled or good is None:
        return
    if facts.last_offsite_at is None:
        out.append("no backup has left the shop yet (upload.enabled is on)")
        return
    copied = facts.last_offsite_backup_at or facts.last_offsite_at
    behind = good - copied
    if behind > dt.timedelta(hours=policy.offsite_lag_hours):
        out.append(
            f"off-site copy is {_ago(behind)} behind the last good backup "
            f"(limit {policy.offsite_lag_hours:g} h)"
        )


def _store_damage(facts: SiteFacts, out: list[str]) -> None:
    """A store check found chunks of the site damaged or missing; it stays a problem until
    a later check reads them fine."""
    if facts.store_damaged_chunks > 0:
        what = f"; {facts.store_damage_summary}" if facts.store_damage_summary else ""
        out.append(
            f"off-site store: {facts.store_damaged_chunks} chunk(s) damaged or missing{what}"
        )


def _health(health: Health | None, policy: StatusPolicy, out: list[str]) -> None:
    if health is None:
        return
    if health.next_transaction - health.oit > policy.oit_gap_max:
        out.append(f"transaction gap next-OIT is {health.next_transaction - health.oit}")
    if health.next_transaction - health.oat > policy.oat_gap_max:
        out.append(f"transaction gap next-OAT is {health.next_transaction - health.oat}")
    if not health.forced_writes:
        out.append("forced writes are off on the live database")
    if health.backup_state != 0:
        out.append("the live database is stuck in nbackup state (stalled or merging)")


def _ago(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 72:
        return f"{hours} h"
    return f"{hours // 24} d"


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def _older(version: str, minimum: str) -> bool:
    def parts(v: str) -> tuple[int, ...]:
        out = []
        for p in v.split("+", maxsplit=1)[0].split("."):
            digits = "".join(ch for ch in p if ch.isdigit())
            out.append(int(digits or 0))
        return tuple(out)

    return parts(version) < parts(minimum)
