"""Which of the agent's backups to delete under keep_daily/keep_weekly/keep_monthly: a pure plan.

Rules, in order of strength:
- Only the agent's own backups are ever candidates (the caller lists them from
  their manifests; anything else in backup.dir is invisible here).
- Never deleted: the newest good backup, any name in `protect` (a backup being
  verified), and the lower nbackup levels a kept backup builds on.
- Good backups: the newest one of each of the last `keep_daily` days,
  `keep_weekly` ISO weeks and `keep_monthly` months (UTC) that have one is kept.
- Not-good backups (unverified, bad) count too, one per day: the newest of
  them on each day is kept while it is newer than the newest good backup (it
  may still be verified, or be evidence) or its day is one of the kept days
  (so bad files stay around for inspection a while); every older one of the
  same day goes, so killed or failed runs never pile up.
- A policy of all zeros deletes nothing (retention off).

Every deletion comes with its reason: which keep rule no longer holds it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable

from common import periods
from common.periods import utc


@dataclasses.dataclass(frozen=True)
class RetentionPolicy:
    keep_daily: int = 7
    keep_weekly: int = 4
    keep_monthly: int = 12

    @property
    def enabled(self) -> bool:
        return (self.keep_daily + self.keep_weekly + self.keep_monthly) > 0


@dataclasses.dataclass(frozen=True)
class BackupEntry:
    """What retention needs to know about one backup."""

    name: str
    finished_at: dt.datetime
    good: bool
    chain: tuple[str, ...] = ()  # names this backup builds on (nbackup lower levels)


@dataclasses.dataclass(frozen=True)
class Deletion:
    """One backup to delete and the keep rule that no longer holds it."""

    name: str
    reason: str


def plan_deletions(
    entries: Iterable[BackupEntry], policy: RetentionPolicy, *, protect: Iterable[str] = ()
) -> list[Deletion]:
    """The backups to delete, oldest first, each with its reason."""
    items = sorted(entries, key=lambda e: (e.finished_at, e.name), reverse=True)
    if not policy.enabled or not items:
        return []
    good = [e for e in items if e.good]
    keep: set[str] = set(protect)
    daily = periods.newest_per_period(good, policy.keep_daily, periods.day, _finished)
    weekly = periods.newest_per_period(good, policy.keep_weekly, periods.iso_week, _finished)
    monthly = periods.newest_per_period(good, policy.keep_monthly, periods.month, _finished)
    keep.update(e.name for e in (*daily, *weekly, *monthly))
    kept_days = {utc(e.finished_at).date() for e in daily}
    if good:
        keep.add(good[0].name)
        newest_good_at = good[0].finished_at
    else:
        newest_good_at = None
    not_good_days: set[dt.date] = set()
    for entry in items:
        if entry.good:
            continue
        day = utc(entry.finished_at).date()
        recent = newest_good_at is None or entry.finished_at > newest_good_at
        if (recent or day in kept_days) and day not in not_good_days:
            keep.add(entry.name)
        not_good_days.add(day)
    _keep_chains(items, keep)
    return [
        Deletion(e.name, _reason(e, items, policy, keep))
        for e in reversed(items)
        if e.name not in keep
    ]


def _reason(
    entry: BackupEntry, items: list[BackupEntry], policy: RetentionPolicy, keep: set[str]
) -> str:
    day = utc(entry.finished_at).date()
    newer_same_day = any(
        o.good == entry.good
        and o.name in keep
        and o.finished_at > entry.finished_at
        and utc(o.finished_at).date() == day
        for o in items
    )
    rules = (
        f"keep_daily={policy.keep_daily}, keep_weekly={policy.keep_weekly}, "
        f"keep_monthly={policy.keep_monthly}"
    )
    if entry.good:
        if newer_same_day:
            return f"a newer good backup of {day} is kept (one per day; {rules})"
        return f"older than the good backups that {rules} keep"
    if newer_same_day:
        return f"a newer unverified or bad backup of {day} is kept (one per day)"
    return (
        f"unverified or bad, older than the newest good backup and outside the "
        f"keep_daily={policy.keep_daily} kept days"
    )


def _finished(entry: BackupEntry) -> dt.datetime:
    return entry.finished_at


def _keep_chains(items: list[BackupEntry], keep: set[str]) -> None:
    by_name = {e.name: e for e in items}
    pending = list(keep)
    while pending:
        entry = by_name.get(pending.pop())
        if entry is None:
            continue
        for name in entry.chain:
            if name not in keep:
                keep.add(name)
                pending.append(name)
