"""The retention plan: keep_daily/weekly/monthly and the never-delete rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from agent.firebird.retention import BackupEntry, RetentionPolicy, plan_deletions

T0 = dt.datetime(2026, 3, 31, 22, 0, tzinfo=dt.UTC)


def plan_retention(
    entries: Iterable[BackupEntry], policy: RetentionPolicy, *, protect: Iterable[str] = ()
) -> list[str]:
    """Names of the backups to delete, oldest first."""
    return [d.name for d in plan_deletions(entries, policy, protect=protect)]


def daily(days: int, *, good: bool = True, prefix: str = "b") -> list[BackupEntry]:
    return [BackupEntry(f"{prefix}{i:03d}", T0 - dt.timedelta(days=i), good) for i in range(days)]


def test_keep_daily_only() -> None:
    doomed = plan_retention(daily(10), RetentionPolicy(3, 0, 0))
    assert doomed == [f"b{i:03d}" for i in range(9, 2, -1)]


def test_weekly_and_monthly_buckets_add_older_keepers() -> None:
    entries = daily(120)
    doomed = set(plan_retention(entries, RetentionPolicy(7, 4, 3)))
    kept = {e.name for e in entries} - doomed
    assert {f"b{i:03d}" for i in range(7)} <= kept
    assert len(kept) <= 7 + 4 + 3
    months = {(e.finished_at.year, e.finished_at.month) for e in entries if e.name in kept}
    assert len(months) == 3


def test_one_per_day_newest_wins() -> None:
    a = BackupEntry("a", T0 - dt.timedelta(hours=3), True)
    b = BackupEntry("b", T0, True)
    assert plan_retention([a, b], RetentionPolicy(1, 0, 0)) == ["a"]


def test_newest_good_is_never_deleted_even_if_old() -> None:
    good = BackupEntry("good", T0 - dt.timedelta(days=400), True)
    bad = [BackupEntry(f"bad{i}", T0 - dt.timedelta(days=i), False) for i in range(3)]
    assert "good" not in plan_retention([good, *bad], RetentionPolicy(1, 1, 1))


def test_protected_backup_being_verified_is_kept() -> None:
    entries = daily(5)
    assert "b004" not in plan_retention(entries, RetentionPolicy(1, 0, 0), protect={"b004"})


def test_unverified_and_bad_newer_than_newest_good_are_kept() -> None:
    good = daily(3)
    pending = BackupEntry("pending", T0 + dt.timedelta(hours=1), False)
    old_bad = BackupEntry("oldbad", T0 - dt.timedelta(days=30), False)
    doomed = plan_retention([*good, pending, old_bad], RetentionPolicy(2, 0, 0))
    assert "pending" not in doomed
    assert "oldbad" in doomed


def test_nbackup_chain_of_a_kept_level_is_kept() -> None:
    l0 = BackupEntry("l0", T0 - dt.timedelta(days=6), True)
    l1 = BackupEntry("l1", T0, True, chain=("l0",))
    assert plan_retention([l0, l1], RetentionPolicy(1, 0, 0)) == []


def test_all_zero_policy_deletes_nothing() -> None:
    assert plan_retention(daily(30), RetentionPolicy(0, 0, 0)) == []


def test_no_entries() -> None:
    assert plan_retention([], RetentionPolicy()) == []


def test_killed_runs_of_one_day_do_not_pile_up() -> None:
    good = BackupEntry("good", T0 - dt.timedelta(days=1), True)
    killed = [BackupEntry(f"k{i}", T0 + dt.timedelta(minutes=i), False) for i in range(10)]
    doomed = plan_retention([good, *killed], RetentionPolicy(7, 0, 0))
    assert doomed == [f"k{i}" for i in range(9)]  # the newest unverified one stays


def test_every_deletion_says_which_keep_rule_no_longer_holds_it() -> None:
    morning = BackupEntry("morning", T0 - dt.timedelta(hours=5), True)
    noon = BackupEntry("noon", T0 - dt.timedelta(hours=2), True)
    evening = BackupEntry("evening", T0, True)
    old = BackupEntry("old", T0 - dt.timedelta(days=20), True)
    old_bad = BackupEntry("oldbad", T0 - dt.timedelta(days=19), False)
    plan = plan_deletions([old, old_bad, morning, noon, evening], RetentionPolicy(1, 0, 0))
    reasons = {d.name: d.reason for d in plan}
    assert set(reasons) == {"old", "oldbad", "morning", "noon"}
    assert reasons["noon"] == (
        "a newer good backup of 2026-03-31 is kept "
        "(one per day; keep_daily=1, keep_weekly=0, keep_monthly=0)"
    )
    assert reasons["old"] == (
        "older than the good backups that keep_daily=1, keep_weekly=0, keep_monthly=0 keep"
    )
    assert "outside the keep_daily=1 kept days" in reasons["oldbad"]
