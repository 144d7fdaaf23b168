"""Which backup an upload run ships, when the next run comes, and what a failure says."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from agent.configsync import ConfigStore
from agent.domain.reports import (
    BackupDetails,
    Outcome,
    RunKind,
    RunReport,
    UploadDetails,
    Verification,
)
from agent.firebird.capability import FirebirdTasks
from agent.firebird.files import Manifest, Status
from agent.firebird.offsite import (
    BUDGET_REST_SECONDS,
    POLL_SECONDS,
    RETRY_SECONDS,
    failure,
    next_delay,
)
from agent.firebird.outcome import JobOutcome
from agent.firebird.upload import UploadLedger, UploadSettings, choose, stop_check
from common.errors import ResourceExhausted, Unavailable
from common.firebird.errors import BackupCorrupt
from common.window import UploadWindow
from tests.support.clock import FakeClock

T0 = dt.datetime(2026, 12, 1, 21, 0, tzinfo=dt.UTC)


def manifest(n: int, status: Status = Status.GOOD, **kw: object) -> Manifest:
    fields: dict[str, object] = dict(
        name=f"b{n}",
        file=f"b{n}.fbk.zst",
        database="/db/shop.fdb",
        method="gbak",
        level=0,
        started_at=(T0 + dt.timedelta(days=n)).isoformat(),
        finished_at=(T0 + dt.timedelta(days=n)).isoformat(),
        raw_sha256="ab" * 32,
        run_id=f"run-{n}",
        status=status,
    )
    fields.update(kw)
    return Manifest(**fields)  # type: ignore[arg-type]


def test_the_newest_good_backup_is_chosen_and_the_older_pending_ones_passed_over(
    tmp_path: Path,
) -> None:
    ledger = UploadLedger(tmp_path)
    backups = [manifest(1), manifest(2), manifest(3), manifest(4, Status.BAD)]
    choice = choose(backups, ledger)
    assert choice is not None
    assert choice.manifest.run_id == "run-3"
    assert choice.passed_over == ("b1.fbk.zst", "b2.fbk.zst")
    ledger.record("run-3", "ef" * 32)
    assert choose(backups, ledger) is None  # done: the older ones are not shipped later
    assert choose([*backups, manifest(5, Status.UNVERIFIED)], ledger) is None


def test_manifests_from_before_raw_checksums_are_never_uploaded(tmp_path: Path) -> None:
    ledger = UploadLedger(tmp_path)
    assert choose([manifest(1, raw_sha256="")], ledger) is None
    assert choose([manifest(1, run_id="")], ledger) is None


def test_an_nbackup_level_ships_its_chain_lowest_level_first(tmp_path: Path) -> None:
    base = manifest(1, method="nbackup", file="b1.nbk.zst")
    level1 = manifest(2, method="nbackup", level=1, file="b2.nbk.zst", chain=["b1.nbk.zst"])
    choice = choose([base, level1], UploadLedger(tmp_path))
    assert choice is not None
    assert [m.file for m in choice.streams] == ["b1.nbk.zst", "b2.nbk.zst"]
    bad_base = manifest(1, Status.BAD, method="nbackup", file="b1.nbk.zst")
    assert choose([bad_base, level1], UploadLedger(tmp_path)) is None


def test_a_damaged_ledger_starts_afresh(tmp_path: Path) -> None:
    ledger = UploadLedger(tmp_path)
    ledger.path.write_text("{not json")
    assert not ledger.uploaded("run-1")
    ledger.record("run-1", "s")
    assert ledger.uploaded("run-1")


def test_the_run_stops_when_the_window_closes_or_its_budget_is_spent() -> None:
    clock = FakeClock(T0)
    window = UploadWindow.parse("21:00-22:00", tz=dt.UTC)
    why = stop_check(UploadSettings(window, max_run_minutes=30), clock)
    assert why() == ""
    clock.advance(dt.timedelta(minutes=30))
    assert why() == "the run used its 30 minutes (upload.max_run_minutes)"
    clock.advance(dt.timedelta(minutes=30))
    assert why() == "the upload window (21:00-22:00 local time) closed"


def report(outcome: Outcome, **details: object) -> RunReport:
    return RunReport(
        kind=RunKind.UPLOAD,
        started_at=T0,
        finished_at=T0,
        outcome=outcome,
        details=UploadDetails(**details),  # type: ignore[arg-type]
    )


def test_the_next_run_comes_sooner_after_a_budget_stop_and_later_after_a_failure() -> None:
    assert next_delay(None) == POLL_SECONDS
    assert next_delay(report(Outcome.SUCCEEDED, complete=True)) == POLL_SECONDS
    assert next_delay(report(Outcome.SUCCEEDED, complete=False)) == BUDGET_REST_SECONDS
    assert next_delay(report(Outcome.FAILED)) == RETRY_SECONDS


@pytest.mark.parametrize(
    ("error", "error_class", "says"),
    [
        (ResourceExhausted("the blob store is full"), "upload.store_full", "free space"),
        (Unavailable("cannot reach the server"), "upload.unavailable", "continues where"),
        (BackupCorrupt("The backup file b.fbk.zst is damaged."), "backup.corrupt", "next verified"),
    ],
)
def test_a_failure_says_what_happens_next(error: Exception, error_class: str, says: str) -> None:
    got_class, message = failure(error)  # type: ignore[arg-type]
    assert got_class == error_class
    assert says in message


def test_only_a_backup_that_passed_verification_wakes_the_upload(tmp_path: Path) -> None:
    woken: list[str] = []
    tasks = FirebirdTasks(
        ConfigStore(tmp_path), FakeClock(T0), on_verified=lambda: woken.append("x")
    )
    for verification in (Verification.FAILED, Verification.NOT_RUN, Verification.PASSED):
        outcome = JobOutcome(
            kind=RunKind.BACKUP,
            started_at=T0,
            finished_at=T0,
            details=BackupDetails(verification=verification),
        )
        tasks._verified(outcome)
    assert woken == ["x"]
