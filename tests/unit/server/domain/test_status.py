"""The status function, case by case, with a fixed clock."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from server.domain.status import (
    Disk,
    Health,
    SiteFacts,
    Status,
    StatusPolicy,
    compute_status,
    image_sync_warning,
)

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
POLICY = StatusPolicy()


def ago(**kw: float) -> dt.datetime:
    return NOW - dt.timedelta(**kw)


def healthy(**overrides: object) -> SiteFacts:
    base = dict(
        enrolled_at=ago(days=30),
        last_seen_at=ago(minutes=1),
        last_backup_at=ago(hours=2),
        last_backup_ok=True,
        last_good_backup_at=ago(hours=2),
    )
    base.update(overrides)
    return SiteFacts(**base)  # type: ignore[arg-type]


def status(facts: SiteFacts, policy: StatusPolicy = POLICY) -> tuple[Status, tuple[str, ...]]:
    result = compute_status(facts, policy, NOW)
    return result.status, result.problems


def test_ok_when_all_is_well() -> None:
    assert status(healthy()) == (Status.OK, ())


def test_token_created_but_no_agent_is_never() -> None:
    st, problems = status(SiteFacts())
    assert st is Status.NEVER
    assert "no verified backup yet" in problems
    assert "no agent enrolled yet" in problems


def test_enrolled_without_backup_is_never() -> None:
    st, problems = status(SiteFacts(enrolled_at=ago(minutes=5), last_seen_at=ago(minutes=1)))
    assert st is Status.NEVER
    assert problems == ("no verified backup yet",)


def test_offline_after_threshold() -> None:
    st, problems = status(healthy(last_seen_at=ago(minutes=16)))
    assert st is Status.OFFLINE
    assert problems[0].startswith("agent not seen for 16 min")


def test_offline_boundary_is_exclusive() -> None:
    assert status(healthy(last_seen_at=ago(minutes=15)))[0] is Status.OK


def test_offline_threshold_comes_from_policy() -> None:
    policy = StatusPolicy(offline_after_minutes=1)
    assert status(healthy(last_seen_at=ago(minutes=2)), policy)[0] is Status.OFFLINE


def test_offline_beats_never() -> None:
    facts = SiteFacts(enrolled_at=ago(days=1), last_seen_at=ago(hours=1))
    st, problems = status(facts)
    assert st is Status.OFFLINE
    assert "no verified backup yet" in problems


def test_failing_when_latest_backup_failed() -> None:
    st, problems = status(healthy(last_backup_ok=False, last_backup_error="disk full"))
    assert st is Status.FAILING
    assert problems == ("latest backup failed: disk full",)


def test_failing_when_live_validation_found_errors() -> None:
    st, problems = status(healthy(last_validation_errors=3, last_validation_summary="3 errors"))
    assert st is Status.FAILING
    assert "live database validation found 3 error(s): 3 errors" in problems


def test_stale_after_threshold() -> None:
    facts = healthy(last_good_backup_at=ago(hours=27), last_backup_at=ago(hours=27))
    st, problems = status(facts)
    assert st is Status.STALE
    assert problems == ("last verified backup 27 h ago (limit 26 h)",)


def test_failing_beats_stale_and_both_are_listed() -> None:
    facts = healthy(
        last_good_backup_at=ago(days=3), last_backup_ok=False, last_backup_error="wrong password"
    )
    st, problems = status(facts)
    assert st is Status.FAILING
    assert len(problems) == 2


def test_never_beats_failing() -> None:
    facts = SiteFacts(
        enrolled_at=ago(hours=1),
        last_seen_at=ago(minutes=1),
        last_backup_ok=False,
        last_backup_error="x",
    )
    assert status(facts)[0] is Status.NEVER


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"disks": (Disk("backup", "/b", 100 * 2**30, 5 * 2**30),)},
            "disk nearly full on backup (5.0 GiB free)",
        ),
        (
            {
                "disks": (Disk("backup", "/b", 1000 * 2**30, 150 * 2**30),),
                "last_backup_size": 100 * 2**30,
            },
            "backup disk has 150.0 GiB free, under twice the last backup",
        ),
        ({"config_refused": "bad cron"}, "configuration refused: bad cron"),
        ({"clock_skew_seconds": -600.0}, "agent clock off by -600 s"),
        ({"outbox_pending": 51}, "51 reports waiting in the agent's outbox"),
        (
            {"health": Health(oit=1, oat=100_000, next_transaction=100_002)},
            "transaction gap next-OIT is 100001",
        ),
        (
            {"health": Health(oit=99_000, oat=1, next_transaction=100_000)},
            "transaction gap next-OAT is 99999",
        ),
        ({"health": Health(forced_writes=False)}, "forced writes are off on the live database"),
        (
            {"health": Health(backup_state=1)},
            "the live database is stuck in nbackup state (stalled or merging)",
        ),
    ],
)
def test_warnings(overrides: dict[str, object], expected: str) -> None:
    st, problems = status(healthy(**overrides))
    assert st is Status.WARNING
    assert problems == (expected,)


def test_an_unaccepted_change_of_backup_figures_keeps_the_site_from_ok() -> None:
    change = "backup r2 from database /x.fdb (was /y.fdb) differs sharply from ..."
    assert status(healthy(figures_change=change)) == (Status.WARNING, (change,))
    assert status(healthy(figures_change=""))[0] is Status.OK


def test_agent_out_of_date_is_a_warning() -> None:
    policy = StatusPolicy(minimum_agent_version="1.2.0")
    assert status(healthy(agent_version="1.1.9"), policy)[0] is Status.WARNING
    assert status(healthy(agent_version="1.10.0"), policy)[0] is Status.OK


def test_precedence_lists_every_problem_in_order() -> None:
    facts = healthy(
        last_seen_at=ago(hours=2),
        last_backup_ok=False,
        last_backup_error="e",
        last_good_backup_at=ago(days=2),
        config_refused="c",
    )
    st, problems = status(facts)
    assert st is Status.OFFLINE
    assert [p.split()[0] for p in problems] == ["agent", "latest", "last", "configuration"]


def test_a_site_whose_agent_was_revoked_is_not_ok_and_says_how_to_re_enroll() -> None:
    revoked = healthy(site="shop-r", agent_revoked_at=ago(minutes=3))
    st, problems = status(revoked)
    assert st is Status.WARNING
    assert problems == (
        "agent revoked at 2026-06-01 11:57 UTC; re-enroll with "
        "`storesafe token create --site shop-r`, then `storesafe-agent enroll` on its PC",
    )
    # worse statuses still win, and the revocation stays listed
    st, problems = status(dataclasses.replace(revoked, last_seen_at=ago(hours=1)))
    assert st is Status.OFFLINE and any(p.startswith("agent revoked") for p in problems)


def test_a_damaged_newest_good_backup_keeps_the_site_from_ok() -> None:
    damaged = healthy(
        damaged_backup_at=ago(hours=2), damaged_backup_file="storesafe-shop-x.fbk.zst"
    )
    st, problems = status(damaged)
    assert st == Status.WARNING
    assert problems == (
        "newest good backup storesafe-shop-x.fbk.zst is damaged (no longer matches its "
        "checksum or no longer restores); take a new backup",
    )
    # a newer good backup since: the newest good one is sound again
    assert status(healthy(damaged_backup_at=ago(hours=30), damaged_backup_file="old"))[0] == (
        Status.OK
    )


IMAGES = StatusPolicy(image_sync_configured=True, image_sync_stale_after_hours=26.0)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"last_image_sync_ok": False, "last_image_sync_error": "denied"},
            "image sync failing: denied",
        ),
        (
            {"last_image_sync_ok": False, "last_image_sync_error": "", "last_image_sync_at": None},
            "image sync failing: unknown error",
        ),
        (
            {"last_image_sync_ok": True, "last_image_sync_at": ago(hours=30)},
            "last image sync 30 h ago (limit 26 h)",
        ),
    ],
)
def test_image_sync_problems_once_images_dir_is_set(
    overrides: dict[str, object], expected: str
) -> None:
    assert status(healthy(**overrides), IMAGES) == (Status.WARNING, (expected,))
    # without images.dir the site does not sync images: old runs make no problem
    assert status(healthy(**overrides)) == (Status.OK, ())


def test_image_sync_limit_comes_from_the_policy() -> None:
    facts = healthy(last_image_sync_ok=True, last_image_sync_at=ago(hours=30))
    longer = dataclasses.replace(IMAGES, image_sync_stale_after_hours=48)
    assert status(facts, longer) == (Status.OK, ())
    assert status(healthy(last_image_sync_ok=True, last_image_sync_at=ago(hours=25)), IMAGES) == (
        Status.OK,
        (),
    )


@pytest.mark.parametrize(
    ("details", "expected"),
    [
        ({}, ""),
        ({"files_scanned": "500", "files_changed": "3"}, ""),
        ({"folder_missing": True}, "the image folder is missing"),
        (
            {"folder_empty": True},
            "the image folder is suddenly empty (the sync before saw files)",
        ),
        ({"stable_files": "99", "stable_changed": "99"}, ""),  # too few to judge
        ({"stable_files": "100", "stable_changed": "29"}, ""),
        (
            {"stable_files": "100", "stable_changed": "30"},
            "image sync found 30 of 100 long-unchanged images changed or deleted (30%); "
            "check the folder before the old snapshots expire",
        ),
    ],
)
def test_image_sync_warning_from_a_pass(details: dict[str, object], expected: str) -> None:
    assert image_sync_warning(details) == expected


def test_an_image_sync_warning_needs_images_dir() -> None:
    facts = healthy(
        last_image_sync_ok=True,
        last_image_sync_at=ago(hours=1),
        last_image_sync_warning="the image folder is missing",
    )
    assert status(facts, IMAGES) == (Status.WARNING, ("the image folder is missing",))
    assert status(facts) == (Status.OK, ())


UPLOADS = StatusPolicy(upload_enabled=True, offsite_lag_hours=30)


def test_uploads_off_ignore_the_off_site_copy() -> None:
    assert status(healthy()) == (Status.OK, ())
    assert status(healthy(last_offsite_at=ago(days=9), last_offsite_backup_at=ago(days=9))) == (
        Status.OK,
        (),
    )


def test_with_uploads_on_a_good_backup_that_never_left_the_shop_is_a_warning() -> None:
    st, problems = status(healthy(), UPLOADS)
    assert st is Status.WARNING
    assert problems == ("no backup has left the shop yet (upload.enabled is on)",)
    # no good backup yet: "never" says it, nothing to ship
    st, problems = status(
        SiteFacts(enrolled_at=ago(minutes=5), last_seen_at=ago(minutes=1)), UPLOADS
    )
    assert (st, problems) == (Status.NEVER, ("no verified backup yet",))


def test_an_off_site_copy_lagging_past_its_limit_is_a_warning() -> None:
    fresh = healthy(last_offsite_at=ago(hours=1), last_offsite_backup_at=ago(hours=2))
    assert status(fresh, UPLOADS) == (Status.OK, ())
    # yesterday's copy while today's upload runs: within the limit
    behind = healthy(last_offsite_at=ago(hours=20), last_offsite_backup_at=ago(hours=26))
    assert status(behind, UPLOADS) == (Status.OK, ())
    late = healthy(last_offsite_at=ago(hours=40), last_offsite_backup_at=ago(hours=50))
    st, problems = status(late, UPLOADS)
    assert st is Status.WARNING
    assert problems == ("off-site copy is 48 h behind the last good backup (limit 30 h)",)
    assert status(late, dataclasses.replace(UPLOADS, offsite_lag_hours=72))[0] is Status.OK
    # the copied backup's report not in yet: the copy's own time stands in for it
    unknown = healthy(last_offsite_at=ago(hours=40))
    assert status(unknown, UPLOADS)[1] == (
        "off-site copy is 38 h behind the last good backup (limit 30 h)",
    )


def test_precedence_holds_with_off_site_problems() -> None:
    stale = healthy(last_good_backup_at=ago(hours=60), last_backup_at=ago(hours=60))
    st, problems = status(stale, UPLOADS)
    assert st is Status.STALE
    assert problems[-1] == "no backup has left the shop yet (upload.enabled is on)"
    offline = dataclasses.replace(stale, last_seen_at=ago(hours=3))
    assert status(offline, UPLOADS)[0] is Status.OFFLINE


def test_known_store_damage_is_a_warning_whatever_the_upload_setting() -> None:
    damaged = healthy(
        store_damaged_chunks=3, store_damage_summary="backups b-1, b-2 cannot be restored"
    )
    for policy in (POLICY, dataclasses.replace(UPLOADS)):
        st, problems = status(dataclasses.replace(damaged, last_offsite_at=ago(hours=1)), policy)
        assert st is Status.WARNING
        assert problems == (
            "off-site store: 3 chunk(s) damaged or missing; backups b-1, b-2 cannot be restored",
        )
