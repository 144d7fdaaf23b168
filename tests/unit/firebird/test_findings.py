"""Parsing what Firebird's validation of a restored copy found (real Firebird 3.0.11 texts)."""

from __future__ import annotations

from common.firebird.errors import fdb_message
from common.firebird.findings import Findings, parse_log, parse_summary

# OperationalError.args[0] of svc.repair(read_only_validation=1) on a copy with
# two pointer-page warnings and no error (firebird.log said "0 errors, 2 warnings").
RAISED_WARNINGS_ONLY = (
    "Unable to perform the requested Service API action:\n- SQLCODE: -999\n"
    "- Summary of validation errors\n- \tNumber of pointer page warnings\t: 2"
)

# The same for a restored nbackup copy whose only finding was one orphan back version
# (a transaction in flight while the pages were copied): a summary with no count at all,
# which the old parser took for an error (the intermittent false "failing").
RAISED_ORPHAN_BACKVERSION = (
    "Unable to perform the requested Service API action:\n- SQLCODE: -999\n"
    "- Summary of validation errors"
)
SCRATCH = "/var/tmp/storesafe-fbtests/64e43fbb/backups-5d2f2290/.storesafe-spool/scratch-0f25.fdb"
ORPHAN_LOG = [
    "vm\tFri Dec  4 20:22:55 2026",
    f"\tDatabase: {SCRATCH}",
    "\tValidation started",
    "",
    "vm\tFri Dec  4 20:22:55 2026",
    f"\tDatabase: {SCRATCH}",
    "\tWarning: Relation has 1 orphan backversions {0 in use} in table ACCOUNTS (129)",
    "",
    "vm\tFri Dec  4 20:22:55 2026",
    f"\tDatabase: {SCRATCH}",
    "\tValidation finished: 0 errors, 1 warnings, 0 fixed",
    "",
]

# svc.get_log() lines around two validations, as Firebird 3.0.11 wrote them.
LOG = [
    "vm\tFri Dec  4 20:04:35 2026",
    "\tDatabase: /var/tmp/storesafe-fbtests/7c56510b/db/damaged.fdb",
    "\tValidation started",
    "",
    "",
    "vm\tFri Dec  4 20:04:35 2026",
    "\tDatabase: /var/tmp/storesafe-fbtests/7c56510b/db/damaged.fdb",
    "\tError: Data page 332 {sequence 116}, line 0 is bad in table ITEMS (131)",
    "",
    "",
    "vm\tFri Dec  4 20:04:35 2026",
    "\tDatabase: /var/tmp/storesafe-fbtests/7c56510b/db/damaged.fdb",
    "\tValidation finished: 1 errors, 0 warnings, 0 fixed",
    "",
    "",
    "vm\tFri Dec  4 20:06:40 2026",
    "\tDatabase: /var/tmp/af-exp/w.fdb",
    "\tValidation started",
    "",
    "",
    "vm\tFri Dec  4 20:06:40 2026",
    "\tDatabase: /var/tmp/af-exp/w.fdb",
    "\tWarning: Pointer page 222 {sequence 0} bits {0x01 full} are not consistent with data "
    "page 227 {sequence 0} state {0x05 full, swept} in table T (128)",
    "",
    "",
    "vm\tFri Dec  4 20:06:40 2026",
    "\tDatabase: /var/tmp/af-exp/w.fdb",
    "\tWarning: Pointer page 222 {sequence 0} bits {0x01 full} are not consistent with data "
    "page 228 {sequence 1} state {0x05 full, swept} in table T (128)",
    "",
    "",
    "vm\tFri Dec  4 20:06:40 2026",
    "\tDatabase: /var/tmp/af-exp/w.fdb",
    "\tValidation finished: 0 errors, 2 warnings, 0 fixed",
    "",
]


def test_the_raised_summary_of_warnings_alone_counts_no_error() -> None:
    found = parse_summary(fdb_message(Exception(RAISED_WARNINGS_ONLY, -999, 335740952)))
    assert (found.errors, found.warnings) == (0, 2)


def test_a_summary_without_counts_loses_to_the_logs_verdict() -> None:
    text = fdb_message(Exception(RAISED_ORPHAN_BACKVERSION, -999, 335740952))
    assert (parse_summary(text).errors, parse_summary(text).warnings) == (1, 0)  # unknown
    found = parse_log(ORPHAN_LOG, SCRATCH)
    assert found is not None
    assert (found.errors, found.warnings) == (0, 1)
    assert found.describe() == (
        "0 errors and 1 warning (Warning: Relation has 1 orphan backversions {0 in use} "
        "in table ACCOUNTS (129))"
    )


def test_the_log_counts_pointer_page_warnings_with_their_lines() -> None:
    # The raised counters are per category; the log's "Validation finished" is the verdict.
    found = parse_log(LOG, "/var/tmp/af-exp/w.fdb")
    assert found is not None
    assert (found.errors, found.warnings, found.source) == (0, 2, "firebird.log")
    assert found.lines[0].startswith("Warning: Pointer page 222 {sequence 0} bits {0x01 full}")
    assert len(found.lines) == 2


def test_the_log_gives_each_database_its_own_verdict_and_quotes_errors() -> None:
    damaged = parse_log(LOG, "/var/tmp/storesafe-fbtests/7c56510b/db/damaged.fdb")
    assert damaged == Findings(
        errors=1,
        warnings=0,
        lines=("Error: Data page 332 {sequence 116}, line 0 is bad in table ITEMS (131)",),
        source="firebird.log",
    )
    assert "1 error and 0 warnings (Error: Data page 332" in damaged.describe()
    assert parse_log(LOG, "/var/tmp/other.fdb") is None


def test_an_unfinished_validation_in_the_log_is_no_verdict() -> None:
    started_only = LOG[:9]  # the damaged copy's entries before "Validation finished"
    assert parse_log(started_only, "/var/tmp/storesafe-fbtests/7c56510b/db/damaged.fdb") is None


def test_a_failure_without_a_summary_is_one_error_quoted() -> None:
    found = parse_summary("validation error, details in firebird.log")
    assert (found.errors, found.warnings) == (1, 0)
    assert found.lines == ("validation error, details in firebird.log",)


def test_describe_lists_at_most_three_lines() -> None:
    many = Findings(errors=0, warnings=5, lines=tuple(f"Warning: w{i}" for i in range(5)))
    assert many.describe() == (
        "0 errors and 5 warnings (Warning: w0; Warning: w1; Warning: w2; +2 more)"
    )


def test_a_log_read_without_the_verdict_yet_is_read_again() -> None:
    from pathlib import Path

    from common.firebird.connection import FirebirdTarget
    from common.firebird.validation import logged_findings

    reads: list[int] = []

    def read(_target: FirebirdTarget) -> list[str]:
        reads.append(1)
        if len(reads) == 1:
            raise OSError("service is busy")  # the validating connection was still busy
        if len(reads) == 2:
            return ORPHAN_LOG[:3]  # the entry is not finished yet
        return ORPHAN_LOG

    target = FirebirdTarget(host="localhost", database="/x.fdb", user="SYSDBA", password="")
    found = logged_findings(target, Path(SCRATCH), pause=0, read=read)
    assert found is not None and found.errors == 0 and found.warnings == 1
    assert len(reads) == 3


def test_a_log_that_never_holds_the_verdict_gives_none_after_its_tries() -> None:
    from pathlib import Path

    from common.firebird.connection import FirebirdTarget
    from common.firebird.validation import logged_findings

    reads: list[int] = []

    def read(_target: FirebirdTarget) -> list[str]:
        reads.append(1)
        return []

    target = FirebirdTarget(host="localhost", database="/x.fdb", user="SYSDBA", password="")
    assert logged_findings(target, Path(SCRATCH), tries=3, pause=0, read=read) is None
    assert len(reads) == 3
