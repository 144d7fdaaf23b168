"""Which off-site snapshots a site keeps and which it forgets: a pure plan (unit-tested
with fixed times), from the site's retention keys.

- Image snapshots: the newest `images.keep_snapshots`, and every one committed less
  than `images.keep_days` days ago.
- Database snapshots (kind "database"): the newest of each of the newest
  `upload.keep_daily` days, `upload.keep_weekly` ISO weeks and `upload.keep_monthly`
  months (UTC, by the time the backup was taken), among those whose backup run is good
  on the server or not known to it yet (its report may still be in the agent's outbox);
  the newest whose run is good; and every one newer than that whose run is not known
  yet. A snapshot of a run the server knows failed is kept only as the newest.
- Never forgotten: the newest snapshot of each kind.

Every forgotten snapshot comes with its reason.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping

from common import periods
from server.domain.offsite import SnapshotRecord


@dataclasses.dataclass(frozen=True)
class RetentionKeys:
    """One site's effective retention keys."""

    keep_snapshots: int = 30
    keep_days: int = 90
    keep_daily: int = 14
    keep_weekly: int = 8
    keep_monthly: int = 12


@dataclasses.dataclass(frozen=True)
class Forget:
    """One snapshot to forget, and why no keep rule holds it."""

    snapshot_id: str
    kind: str
    created_at: dt.datetime
    reason: str


def plan_forget(
    snapshots: Iterable[SnapshotRecord],
    keys: RetentionKeys,
    *,
    run_good: Mapping[str, bool],
    now: dt.datetime,
) -> list[Forget]:
    """The snapshots to forget, oldest first. `run_good` maps a backup run id to whether
    that run is good; a run it does not name is not known to the server yet."""
    items = sorted(snapshots, key=_order, reverse=True)
    images = [s for s in items if s.kind == "images"]
    database = [s for s in items if s.kind == "database"]
    forget = _images(images, keys, now) + _database(database, keys, run_good)
    return sorted(forget, key=lambda f: (f.created_at, f.snapshot_id))


def _images(items: list[SnapshotRecord], keys: RetentionKeys, now: dt.datetime) -> list[Forget]:
    keep = {s.snapshot_id for s in items[: max(keys.keep_snapshots, 1)]}
    young = now - dt.timedelta(days=keys.keep_days)
    keep.update(s.snapshot_id for s in items if s.committed_at > young)
    why = (
        f"older than the newest images.keep_snapshots={keys.keep_snapshots} and "
        f"committed more than images.keep_days={keys.keep_days} days ago"
    )
    return [
        Forget(s.snapshot_id, s.kind, s.created_at, why) for s in items if s.snapshot_id not in keep
    ]


def _database(
    items: list[SnapshotRecord], keys: RetentionKeys, run_good: Mapping[str, bool]
) -> list[Forget]:
    if not items:
        return []
    counted = [s for s in items if run_good.get(s.backup_run_id, True)]
    keep = {items[0].snapshot_id}
    for count, period in (
        (keys.keep_daily, periods.day),
        (keys.keep_weekly, periods.iso_week),
        (keys.keep_monthly, periods.month),
    ):
        keep.update(
            s.snapshot_id for s in periods.newest_per_period(counted, count, period, _taken)
        )
    good = [s for s in items if run_good.get(s.backup_run_id) is True]
    if good:
        keep.add(good[0].snapshot_id)
    newest_good = good[0].created_at if good else None
    for s in items:
        if s.backup_run_id not in run_good and (newest_good is None or s.created_at > newest_good):
            keep.add(s.snapshot_id)
    rules = (
        f"upload.keep_daily={keys.keep_daily}, upload.keep_weekly={keys.keep_weekly}, "
        f"upload.keep_monthly={keys.keep_monthly}"
    )
    out = []
    for s in items:
        if s.snapshot_id in keep:
            continue
        if run_good.get(s.backup_run_id) is False:
            why = f"its backup run {s.backup_run_id} is not good, and it is not the newest copy"
        else:
            why = f"older than the copies that {rules} keep"
        out.append(Forget(s.snapshot_id, s.kind, s.created_at, why))
    return out


def _order(s: SnapshotRecord) -> tuple[dt.datetime, dt.datetime, str]:
    return (s.created_at, s.committed_at, s.snapshot_id)


def _taken(s: SnapshotRecord) -> dt.datetime:
    return s.created_at
