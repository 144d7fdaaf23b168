"""Which off-site snapshots a site keeps: images by count and age, database copies per
day/week/month, the newest of each kind and the newest good copy never forgotten."""

from __future__ import annotations

import datetime as dt

import pytest

from common.errors import FailedPrecondition, InvalidArgument
from server.domain.offsite import SnapshotRecord
from server.domain.store_gc import check_clock, check_margin, ref_key
from server.domain.store_retention import RetentionKeys, plan_forget

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


def snap(n: int, days_ago: float, kind: str = "images", run: str = "") -> SnapshotRecord:
    when = NOW - dt.timedelta(days=days_ago)
    return SnapshotRecord(
        snapshot_id=f"{n:064x}",
        kind=kind,
        created_at=when,
        committed_at=when,
        entries=1,
        size=1,
        data_key_id="0" * 16,
        backup_run_id=run,
        chunks=1,
        stored_bytes=1,
        record_sha256="0" * 64,
    )


def forgotten(snaps: list[SnapshotRecord], keys: RetentionKeys, good: dict[str, bool]) -> set[int]:
    plan = plan_forget(snaps, keys, run_good=good, now=NOW)
    return {int(f.snapshot_id, 16) for f in plan}


def test_images_keep_the_newest_n_and_the_young_ones() -> None:
    snaps = [snap(n, days_ago=n * 10) for n in range(10)]  # 0 newest, 9 oldest (90 days)
    keys = RetentionKeys(keep_snapshots=3, keep_days=45)
    assert forgotten(snaps, keys, {}) == {5, 6, 7, 8, 9}  # 0-2 by count, 3-4 by age
    assert forgotten(snaps, RetentionKeys(keep_snapshots=8, keep_days=0), {}) == {8, 9}
    plan = plan_forget(snaps, keys, run_good={}, now=NOW)
    assert [int(f.snapshot_id, 16) for f in plan] == [9, 8, 7, 6, 5]  # oldest first
    assert "images.keep_snapshots=3" in plan[0].reason and "keep_days=45" in plan[0].reason


def test_the_newest_of_each_kind_is_never_forgotten_even_when_everything_is_old() -> None:
    snaps = [
        snap(1, 400),
        snap(2, 500),
        snap(3, 450, "database", "r3"),
        snap(4, 600, "database", "r4"),
    ]
    keys = RetentionKeys(keep_snapshots=1, keep_days=0, keep_daily=0, keep_weekly=0, keep_monthly=0)
    assert forgotten(snaps, keys, {"r3": True, "r4": True}) == {2, 4}
    assert forgotten([snap(1, 1000)], keys, {}) == set()


def test_database_copies_keep_the_newest_per_day_week_and_month() -> None:
    # two copies a day for 60 days, every run good
    snaps = [
        snap(day * 2 + half, day + half * 0.25, "database", f"r{day}-{half}")
        for day in range(60)
        for half in (0, 1)
    ]
    good = {s.backup_run_id: True for s in snaps}
    kept = {s.snapshot_id for s in snaps} - {
        f.snapshot_id
        for f in plan_forget(
            snaps,
            RetentionKeys(keep_daily=3, keep_weekly=0, keep_monthly=0),
            run_good=good,
            now=NOW,
        )
    }
    assert {int(k, 16) for k in kept} == {0, 2, 4}  # the newer copy of each of 3 days
    keys = RetentionKeys(keep_daily=7, keep_weekly=4, keep_monthly=3)
    kept_ids = {s.snapshot_id for s in snaps} - {
        f.snapshot_id for f in plan_forget(snaps, keys, run_good=good, now=NOW)
    }
    days = sorted({(NOW - snaps[int(k, 16)].created_at).days for k in kept_ids})
    assert days[:7] == list(range(7))
    assert len(kept_ids) <= 7 + 4 + 3 and max(days) > 28  # a monthly one reaches back


def test_the_newest_good_copy_is_kept_when_newer_runs_failed() -> None:
    snaps = [
        snap(1, 1, "database", "bad1"),
        snap(2, 2, "database", "bad2"),
        snap(3, 40, "database", "ok"),
    ]
    keys = RetentionKeys(keep_daily=0, keep_weekly=0, keep_monthly=0)
    gone = plan_forget(snaps, keys, run_good={"bad1": False, "bad2": False, "ok": True}, now=NOW)
    assert {int(f.snapshot_id, 16) for f in gone} == {2}  # 1 is the newest, 3 the newest good
    assert "not good" in gone[0].reason


def test_copies_of_runs_the_server_does_not_know_yet_are_kept_while_newer_than_the_newest_good() -> (
    None
):
    snaps = [
        snap(1, 1, "database", "pending1"),
        snap(2, 2, "database", "pending2"),
        snap(3, 3, "database", "ok"),
        snap(4, 30, "database", "unknown-old"),
    ]
    keys = RetentionKeys(keep_daily=0, keep_weekly=0, keep_monthly=0)
    assert forgotten(snaps, keys, {"ok": True}) == {4}


def test_kinds_do_not_count_against_each_other() -> None:
    snaps = [snap(1, 0), snap(2, 1, "database", "r"), snap(3, 200)]
    keys = RetentionKeys(keep_snapshots=1, keep_days=0)
    assert forgotten(snaps, keys, {"r": True}) == {3}


def test_margin_clock_and_reference_keys() -> None:
    assert check_margin(24) == dt.timedelta(hours=24)
    with pytest.raises(InvalidArgument, match="at least 1 hour"):
        check_margin(0.5)
    check_clock(NOW, None)  # SQLite: nothing to compare
    check_clock(NOW, NOW + dt.timedelta(minutes=4))
    with pytest.raises(FailedPrecondition, match="differ by 360 s"):
        check_clock(NOW, NOW - dt.timedelta(minutes=6))
    assert ref_key("ff" * 32) == 2**64 - 1 and ref_key("00" * 32) == 0
