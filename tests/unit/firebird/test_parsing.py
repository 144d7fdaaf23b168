"""Parsing of gbak logs and online-validation output; nbackup safety rules."""

from __future__ import annotations

import pytest

from agent.firebird.files import Manifest, Status
from agent.firebird.nbackup import plan_chain
from agent.firebird.validate import parse_validation
from common.firebird.errors import NbackupPrecondition, RestoreFailed
from common.firebird.findings import parse_summary
from common.firebird.gbaklog import GbakLog, check_restored
from common.firebird.restore import services_call_is_safe


def parse_counts(lines: list[str], *, restore: bool = False) -> dict[str, int]:
    """Feed a whole log to the line-by-line parser the jobs use."""
    log = GbakLog(restore=restore)
    for line in lines:
        log.feed(line)
    return log.counts


def validation_summary(text: str) -> tuple[int, int]:
    found = parse_summary(text)
    return found.errors, found.warnings


BACKUP_LOG = [
    "gbak:readied database /db/shop.fdb for backup",
    "gbak:writing tables",
    "gbak:    writing table ACCOUNTS",
    "gbak:    writing data for table ACCOUNTS",
    "gbak:5000 records written",
    "gbak:    writing table EMPTY",
    "gbak:    writing data for table EMPTY",
    "gbak:    writing table ITEMS",
    "gbak:    writing data for table ITEMS",
    "gbak:10000 records written",
    "gbak:20000 records written",
    "gbak:20020 records written",
    "gbak:closing file, committing, and finishing. 125952 bytes written",
]
RESTORE_LOG = [
    "gbak:restoring table ACCOUNTS",
    "gbak:restoring data for table ACCOUNTS",
    "gbak:   5000 records restored",
    "gbak:restoring data for table ITEMS",
    "gbak:   10000 records restored",
    "gbak:   20000 records restored",
    "gbak:   20020 records restored",
    "gbak:creating indexes",
]


def test_backup_counts() -> None:
    # gbak prints running totals every 10,000 records: the last one counts
    assert parse_counts(BACKUP_LOG) == {"ACCOUNTS": 5000, "EMPTY": 0, "ITEMS": 20020}


def test_restore_counts() -> None:
    assert parse_counts(RESTORE_LOG, restore=True) == {"ACCOUNTS": 5000, "ITEMS": 20020}


def test_a_restore_log_without_the_closing_line_is_incomplete() -> None:
    check_restored(
        [
            "gbak:finishing, closing, and going home",
            "gbak:adjusting the ONLINE and FORCED WRITES flags",
            "",
        ]
    )
    with pytest.raises(RestoreFailed, match="incomplete"):
        check_restored(["gbak:restoring data for table ITEMS", ""])  # Firebird 3 said "ok"


def test_clean_validation() -> None:
    out = parse_validation(
        [
            "22:06:00.11 Validation started",
            "",
            "22:06:00.11 Relation 128 (ACCOUNTS)",
            "22:06:00.11 Relation 128 (ACCOUNTS) is ok",
            "22:06:00.11 Validation finished",
        ]
    )
    assert (out.errors, out.warnings) == (0, 0)
    assert "no errors" in out.summary


def test_validation_with_errors_and_lock_warning() -> None:
    out = parse_validation(
        [
            "10:00:00.00 Relation 128 (ACCOUNTS)",
            "10:00:00.00 Error: Page 153 wrong type (expected data encountered 0)",
            "10:00:00.00 Relation 128 (ACCOUNTS) : 2 ERRORS found",
            "10:00:00.00 Relation 129 (ITEMS) : 1 warnings found",
            "10:00:00.00 Acquire relation lock failed",
        ]
    )
    assert out.errors == 2
    assert out.warnings == 2
    assert "Page 153" in out.summary


def test_error_lines_without_summary_still_count() -> None:
    out = parse_validation(["Error: Data page 7 is corrupt"])
    assert out.errors == 1


@pytest.mark.parametrize(
    ("version", "platform", "safe"),
    [
        ("LI-V3.0.11.33637 Firebird 3.0", "linux", False),
        ("LI-V3.0.6.33328 Firebird 3.0", "linux", False),
        ("LI-V3.0.12.33787 Firebird 3.0", "linux", True),
        ("LI-V4.0.5.3140 Firebird 4.0", "linux", True),
        ("WI-V3.0.11.33637 Firebird 3.0", "win32", True),
        ("WI-V3.0.11.33637 Firebird 3.0", "linux", True),
        ("LI-V3.0.11.33637 Firebird 3.0", "win32", False),
    ],
)
def test_nbackup_services_call_only_where_safe(version: str, platform: str, safe: bool) -> None:
    assert services_call_is_safe(version, platform=platform) is safe


def manifest(name: str, level: int, guid: str, status: Status = Status.GOOD) -> Manifest:
    return Manifest(
        name=name,
        file=f"{name}.nbk.zst",
        database="/db/shop.fdb",
        method="nbackup",
        level=level,
        started_at="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T00:00:00+00:00",
        nbackup_guid=guid,
        status=status,
    )


def test_chain_uses_the_history_guids() -> None:
    backups = [manifest("old0", 0, "{A}"), manifest("new0", 0, "{B}"), manifest("l1", 1, "{C}")]
    assert plan_chain(2, {0: "{B}", 1: "{C}"}, backups, "/db/shop.fdb") == [
        "new0.nbk.zst",
        "l1.nbk.zst",
    ]
    assert plan_chain(0, {}, backups, "/db/shop.fdb") == []


def test_level_without_its_lower_level_is_refused_before_any_nbackup_call() -> None:
    with pytest.raises(NbackupPrecondition):
        plan_chain(1, {}, [], "/db/shop.fdb")
    # history names a level-0 backup the agent does not have (someone else's)
    with pytest.raises(NbackupPrecondition):
        plan_chain(1, {0: "{X}"}, [manifest("mine0", 0, "{B}")], "/db/shop.fdb")
    # a bad level 0 is no base
    with pytest.raises(NbackupPrecondition):
        plan_chain(1, {0: "{B}"}, [manifest("mine0", 0, "{B}", Status.BAD)], "/db/shop.fdb")


def test_restored_copy_validation_summary() -> None:
    warnings_only = (
        "Summary of validation errors \tNumber of record level warnings\t: 1 "
        "\tNumber of pointer page warnings\t: 1"
    )
    assert validation_summary(warnings_only) == (0, 2)
    damaged = (
        "Summary of validation errors Number of record level errors : 3 "
        "Number of data page errors : 1 Number of pointer page warnings : 1"
    )
    assert validation_summary(damaged) == (4, 1)
    assert validation_summary("validation error, details in firebird.log") == (1, 0)
