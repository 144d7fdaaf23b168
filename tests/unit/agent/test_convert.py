"""Domain <-> proto conversion loses nothing, for every kind of run report detail."""

from __future__ import annotations

import datetime as dt

import pytest
from storesafe.v1 import agent_pb2, types_pb2

from agent.domain.messages import CheckIn, Enrollment, EnrollRequest
from agent.domain.reports import (
    BackupDetails,
    DiskUsage,
    FileChange,
    FileCheckDetails,
    FileState,
    FirebirdHealth,
    ImageSyncDetails,
    Outcome,
    RunKind,
    RunReport,
    UploadDetails,
    ValidationDetails,
    Verification,
)
from agent.transport import convert
from common.errors import InvalidArgument
from tests.support import agentwire
from tests.support.agentfakes import T0, report

HEALTH = FirebirdHealth(
    oit=10,
    oat=12,
    ost=12,
    next_transaction=20,
    sweep_interval=20000,
    forced_writes=False,
    page_size=8192,
    ods="12.0",
    size_bytes=123_456_789,
    backup_state=1,
    server_version="LI-V3.0.11.33637 Firebird 3.0",
)

DETAILS = [
    None,
    BackupDetails(),
    BackupDetails(
        method="nbackup",
        level=2,
        file="shop-20261126.nbk.zst",
        size_raw=2**40,
        size_compressed=2**33,
        checksum="sha256:" + "ab" * 32,
        raw_checksum="sha256:" + "cd" * 32,
        verification=Verification.FAILED,
        verification_seconds=12.5,
        verification_message="row count of CUSTOMERS dropped by 40%",
        table_counts={"CUSTOMERS": 1200, "CONTRACTS": 0},
        firebird_version="3.0.11",
        database="C:\\RTOwin\\DATA.FDB",
        health=HEALTH,
        problems=("large row drop", "slow"),
        backup_seconds=301.25,
        validation_errors=0,
        validation_warnings=2,
    ),
    BackupDetails(verification=Verification.PASSED),
    ImageSyncDetails(files_scanned=10_000, files_copied=12, bytes_copied=5 * 2**30, files_failed=1),
    ValidationDetails(errors=2, warnings=5, summary="2 errors in table X"),
    UploadDetails(file="shop.fbk.zst", bytes=2**35),
    UploadDetails(
        file="storesafe-shop-20261126T210000Z-gbak-0123abcd.fbk.zst",
        bytes=2**31,
        backup_run_id="0b6f8f8e-0c39-4c8e-9a57-5d0c7f3e2a11",
        snapshot_id="ef" * 32,
        backup_size=2**29,
        bytes_sent=2**20,
        chunks_sent=70,
        chunks_present=400_000,
        complete=False,
        paused_reason="the upload window 22:00-06:00 local time closed",
    ),
    FileCheckDetails(
        files_checked=9, bytes_checked=2**34, files_damaged=1, restored="a.fbk.zst", summary="s"
    ),
]
CHANGES = (
    FileChange("storesafe-x-20261126T210000Z-gbak-0123abcd.fbk.zst", FileState.PRUNED, "old"),
    FileChange("storesafe-x-20261127T210000Z-gbak-4567abcd.fbk.zst", FileState.DAMAGED, "sum"),
)


@pytest.mark.parametrize("details", DETAILS, ids=lambda d: type(d).__name__)
@pytest.mark.parametrize("kind", list(RunKind))
def test_run_report_round_trip(details: object, kind: RunKind) -> None:
    original = report(
        7,
        kind=kind,
        details=details,
        outcome=Outcome.FAILED,
        error_class="firebird.auth",
        error_message="the password for SYSDBA was refused",
        trigger="remote",
        started_at=dt.datetime(2026, 11, 26, 23, 59, 59, 123456, tzinfo=dt.UTC),
    )
    wire = convert.report_to_proto(original)
    again = agentwire.report_from_proto(types_pb2.RunReport.FromString(wire.SerializeToString()))
    assert again == original


@pytest.mark.parametrize("details", DETAILS[-1:] + DETAILS[3:4], ids=lambda d: type(d).__name__)
def test_file_changes_travel_on_the_wire_and_through_the_outbox(details: object) -> None:
    original = report(8, kind=RunKind.FILE_CHECK, details=details, file_changes=CHANGES)
    wire = convert.report_to_proto(original)
    again = agentwire.report_from_proto(types_pb2.RunReport.FromString(wire.SerializeToString()))
    assert again == original
    assert RunReport.from_json(original.to_json()) == original


def test_times_in_other_zones_arrive_as_utc() -> None:
    cet = dt.timezone(dt.timedelta(hours=1))
    original = report(1, started_at=dt.datetime(2026, 1, 1, 13, 0, tzinfo=cet))
    again = agentwire.report_from_proto(convert.report_to_proto(original))
    assert again.started_at == dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    assert again.started_at.tzinfo == dt.UTC


def test_enums_map_to_their_wire_values() -> None:
    wire = convert.report_to_proto(
        report(1, details=BackupDetails(verification=Verification.PASSED))
    )
    assert wire.kind == types_pb2.RUN_KIND_BACKUP
    assert wire.outcome == types_pb2.RUN_OUTCOME_SUCCEEDED
    assert wire.backup.verification == types_pb2.VERIFICATION_PASSED
    assert not wire.backup.HasField("health")


def test_a_figure_that_does_not_fit_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="report-0001"):
        convert.report_to_proto(report(1, details=UploadDetails(bytes=-1)))


def test_check_in_carries_every_fact() -> None:
    checkin = CheckIn(
        agent_version="0.1.0",
        hostname="pc1",
        os="Windows 10 (10.0.19045)",
        agent_time=T0,
        config_revision=4,
        disks=(DiskUsage("backup", "C:\\Backups", 100, 40),),
        firebird=HEALTH,
        outbox_pending=3,
    )
    wire = convert.checkin_to_proto(checkin)
    assert (wire.hostname, wire.os, wire.config_revision, wire.outbox_pending) == (
        "pc1",
        "Windows 10 (10.0.19045)",
        4,
        3,
    )
    assert convert.from_timestamp(wire.agent_time) == T0
    assert [(d.label, d.path, d.total_bytes, d.free_bytes) for d in wire.disks] == [
        ("backup", "C:\\Backups", 100, 40)
    ]
    assert agentwire.health_from_proto(wire.firebird) == HEALTH


def test_check_in_without_firebird_figures_leaves_them_unset() -> None:
    wire = convert.checkin_to_proto(CheckIn(agent_version="1", hostname="h", os="o", agent_time=T0))
    assert not wire.HasField("firebird")


def test_check_in_reply() -> None:
    wire = agent_pb2.CheckInResponse(desired_config_revision=9, checkin_interval_seconds=30)
    reply = convert.checkin_reply_from_proto(wire)
    assert (reply.server_time, reply.desired_config_revision, reply.checkin_interval_seconds) == (
        None,
        9,
        30,
    )
    wire.server_time.CopyFrom(convert.timestamp(T0))
    assert convert.checkin_reply_from_proto(wire).server_time == T0


def test_enrollment_both_ways() -> None:
    wire = convert.enroll_to_proto(
        EnrollRequest(token="t", site="s", hostname="h", agent_version="v", os="o")
    )
    assert (wire.token, wire.site, wire.hostname, wire.agent_version, wire.os) == (
        "t",
        "s",
        "h",
        "v",
        "o",
    )
    got = convert.enrollment_from_proto(
        agent_pb2.EnrollResponse(agent_id="a", credential="c", site="s", group="g")
    )
    assert got == Enrollment(agent_id="a", credential="c", site="s", group="g")
    with pytest.raises(InvalidArgument):
        convert.enrollment_from_proto(agent_pb2.EnrollResponse(agent_id="a"))


def test_secrets_stay_out_of_reprs() -> None:
    assert "hunter2" not in repr(
        EnrollRequest(token="hunter2", site="s", hostname="h", agent_version="v", os="o")
    )
    enrollment = Enrollment(agent_id="a", credential="hunter2", site="s", group="g")
    assert "hunter2" not in repr(enrollment)
