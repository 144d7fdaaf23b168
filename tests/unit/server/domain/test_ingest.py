"""server/domain/ingest.py (with rules.py, details.py): every field of every agent message has one rule, and absurd values
are refused naming the field, in a short text."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from google.protobuf.descriptor import Descriptor
from storesafe.v1 import agent_pb2, types_pb2

from common.errors import InvalidArgument
from server.domain import details as detail_rules
from server.domain import ingest, rules
from server.domain.status import Disk
from server.rpc.convert import agent as convert

NOW = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)
START = (int((NOW - dt.timedelta(minutes=5)).timestamp()), 0)
END = (int(NOW.timestamp()), 0)


def run(**fields: Any) -> ingest.RunInput:
    base: dict[str, Any] = dict(
        id="3f1c0a52-0000-4000-8000-000000000001",
        kind="backup",
        started_at=START,
        finished_at=END,
        outcome="succeeded",
        error_class="",
        error_message="",
        trigger="schedule",
        details_kind=None,
        details={},
    )
    base.update(fields)
    return ingest.RunInput(**base)


def backup(**details: Any) -> ingest.RunInput:
    return run(details_kind="backup", details={"method": "gbak", **details})


def checkin(**fields: Any) -> ingest.CheckInInput:
    base: dict[str, Any] = dict(
        agent_version="1.0",
        hostname="pos-1",
        os="Windows 10",
        agent_time=END,
        config_revision=3,
        disks=(Disk("data", "C:\\", 100, 40),),
        firebird=None,
        outbox_pending=0,
    )
    base.update(fields)
    return ingest.CheckInInput(**base)


def refused(fn: Any, field: str) -> str:
    with pytest.raises(InvalidArgument) as err:
        fn()
    text = str(err.value)
    assert text.startswith(f"{field}:"), text
    assert len(text) < 200, text
    return text


def test_a_sane_report_and_check_in_pass_unchanged() -> None:
    good = backup(
        file="storesafe-shop-20260501T120000Z-gbak-1a2b3c4d.fbk.zst",
        size_raw="1000",
        checksum="sha256:" + "ab" * 32,
        verification="VERIFICATION_PASSED",
        verification_seconds=1.25,
        table_counts={"CUSTOMERS": "12", "RENTALS": "0"},
        health={"oit": "1", "oat": "2", "page_size": 8192, "ods": "12.0"},
        problems=["a row drop"],
    )
    record = ingest.run_record(dataclasses.replace(good, verification="passed"), NOW)
    assert record.details == {"backup": good.details} and record.verification == "passed"
    assert record.started_at == NOW - dt.timedelta(minutes=5)
    facts = ingest.checkin_facts(checkin(firebird={"oit": "7", "forced_writes": True}))
    assert facts.hostname == "pos-1" and facts.firebird == {"oit": "7", "forced_writes": True}


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (run(id="../../etc/passwd"), "report.id"),
        (run(kind="99"), "report.kind"),
        (run(kind=""), "report.kind"),
        (run(outcome="7"), "report.outcome"),
        (run(started_at=None), "report"),
        (run(started_at=(START[0], -1)), "report.started_at"),
        (run(finished_at=(END[0], 10**9)), "report.finished_at"),
        (run(started_at=(END[0] + 1, 0)), "report.finished_at"),
        (run(started_at=(START[0] - 40 * 86400, 0)), "report.started_at"),
        (run(finished_at=(END[0] + 3 * 86400, 0)), "report.finished_at"),
        (run(error_class="x" * 65), "report.error_class"),
        (run(error_message="boom\x00"), "report.error_message"),
        (run(trigger="Schedule!"), "report.trigger"),
        (run(details_kind="upload", details={}), "report.upload"),
        (backup(verification_seconds="NaN"), "report.backup.verification_seconds"),
        (backup(backup_seconds="Infinity"), "report.backup.backup_seconds"),
        (backup(backup_seconds=-1.0), "report.backup.backup_seconds"),
        (backup(verification=42), "report.backup.verification"),
        (backup(method="tar"), "report.backup.method"),
        (backup(level=-1), "report.backup.level"),
        (backup(size_raw="-1"), "report.backup.size_raw"),
        (backup(size_compressed=str(2**64 - 1)), "report.backup.size_compressed"),
        (backup(file="../../etc/passwd"), "report.backup.file"),
        (backup(file="C:\\Backups\\a.fbk"), "report.backup.file"),
        (backup(file=".."), "report.backup.file"),
        (backup(checksum="md5:zz"), "report.backup.checksum"),
        (backup(table_counts={f"T{i}": "1" for i in range(2001)}), "report.backup.table_counts"),
        (backup(table_counts={"T": "-4"}), "report.backup.table_counts['T']"),
        (backup(table_counts={"T\x00": "1"}), "report.backup.table_counts key"),
        (backup(problems=["p"] * 51), "report.backup.problems"),
        (backup(database="C:\\db\x00.fdb"), "report.backup.database"),
        (backup(health={"oit": "-5"}), "report.backup.health.oit"),
        (backup(health={"backup_state": 3}), "report.backup.health.backup_state"),
        (backup(health={"page_size": 1000}), "report.backup.health.page_size"),
        (backup(surprise=1), "report.backup.surprise"),
        (
            run(kind="upload", details_kind="upload", details={"file": "/etc/shadow"}),
            "report.upload.file",
        ),
        (
            run(kind="image-sync", details_kind="image_sync", details={"files_failed": "-1"}),
            "report.image_sync.files_failed",
        ),
        (
            run(kind="image-sync", details_kind="image_sync", details={"snapshot_id": "x" * 64}),
            "report.image_sync.snapshot_id",
        ),
        (
            run(kind="image-sync", details_kind="image_sync", details={"folder_empty": "yes"}),
            "report.image_sync.folder_empty",
        ),
        (
            run(
                kind="image-sync",
                details_kind="image_sync",
                details={"skipped": {f"r{i}": "1" for i in range(21)}},
            ),
            "report.image_sync.skipped",
        ),
        (
            run(kind="image-sync", details_kind="image_sync", details={"skipped": {"\x00": "1"}}),
            "report.image_sync.skipped key",
        ),
        (
            run(kind="image-sync", details_kind="image_sync", details={"stable_changed": "-1"}),
            "report.image_sync.stable_changed",
        ),
        (
            run(kind="validation", details_kind="validation", details={"errors": -2}),
            "report.validation.errors",
        ),
        (dataclasses.replace(backup(), verification="9"), "report.backup.verification"),
    ],
)
def test_absurd_run_reports_are_refused_naming_the_field(
    value: ingest.RunInput, field: str
) -> None:
    refused(lambda: ingest.run_record(value, NOW), field)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (checkin(hostname="pos\x00evil"), "hostname"),
        (checkin(hostname="h" * 256), "hostname"),
        (checkin(agent_version="1.0\n"), "agent_version"),
        (checkin(os="\x1b[31mred"), "os"),
        (checkin(config_revision=-1), "config_revision"),
        (checkin(config_revision=2**63 - 1), "config_revision"),
        (checkin(agent_time=(END[0], -1)), "agent_time"),
        (checkin(agent_time=(10**12, 0)), "agent_time"),
        (checkin(disks=(Disk("data", "C:\\", 10, 11),)), "disks[0].free_bytes"),
        (checkin(disks=(Disk("d", "/", 2**63, 0),)), "disks[0].total_bytes"),
        (checkin(disks=(Disk("d\x00", "/", 1, 0),)), "disks[0].label"),
        (checkin(disks=(Disk("d", "/" * 1025, 1, 0),)), "disks[0].path"),
        (checkin(disks=(Disk("d", "/", 1, 0),) * 17), "disks"),
        (checkin(firebird={"oit": "-1"}), "firebird.oit"),
        (checkin(firebird={"next_transaction": str(2**63)}), "firebird.next_transaction"),
        (checkin(firebird={"forced_writes": "yes"}), "firebird.forced_writes"),
        (checkin(firebird={"ods": "12.0; DROP"}), "firebird.ods"),
        (checkin(firebird={"server_version": "x" * 129}), "firebird.server_version"),
    ],
)
def test_absurd_check_ins_are_refused_naming_the_field(
    value: ingest.CheckInInput, field: str
) -> None:
    refused(lambda: ingest.checkin_facts(value), field)


def test_acks_enrollment_and_revisions() -> None:
    refused(lambda: rules.revision("revision", -3), "revision")
    refused(lambda: rules.revision("running_revision", 2**31), "running_revision")
    refused(lambda: ingest.command_ack("../x", "succeeded", ""), "command_id")
    refused(lambda: ingest.command_ack("c-1", "9", ""), "outcome")
    refused(lambda: ingest.command_ack("c-1", "failed", "a\x00b"), "message")
    refused(lambda: ingest.config_ack_error("\x00"), "error")
    assert ingest.config_ack_error("e" * 900) == "e" * 500  # free text is cut, not refused
    enroll = ingest.EnrollInput(token="sset_a_b", site=" shop-1 ", hostname="pos")
    assert ingest.enroll(enroll).site == "shop-1"
    refused(lambda: ingest.enroll(dataclasses.replace(enroll, hostname="p\x00")), "hostname")
    refused(lambda: ingest.enroll(dataclasses.replace(enroll, site="../x")), "site")
    refused(lambda: ingest.enroll(dataclasses.replace(enroll, token="t" * 300)), "token")


def test_a_huge_value_is_never_repeated_in_the_error() -> None:
    huge = "../" + "x" * 1_000_000
    for fn in (
        lambda: ingest.run_record(backup(file=huge), NOW),
        lambda: ingest.checkin_facts(checkin(hostname=huge + "\x00")),
        lambda: ingest.enroll(ingest.EnrollInput(token="t", site=huge, hostname="")),
        lambda: ingest.run_record(backup(table_counts={huge: "-1"}), NOW),
    ):
        with pytest.raises(InvalidArgument) as err:
            fn()
        assert len(str(err.value)) < 200


def _fields(descriptor: Descriptor) -> set[str]:
    return {f.name for f in descriptor.fields}


def test_every_details_field_has_a_rule() -> None:
    """A field added to a details message must get its rule here (until it does, the
    server refuses reports that set it: nothing unjudged is stored)."""
    report = types_pb2.RunReport.DESCRIPTOR
    details = {f.name: f.message_type for f in report.oneofs_by_name["details"].fields}
    assert set(details) == set(detail_rules.DETAILS)
    for name, descriptor in details.items():
        assert _fields(descriptor) == set(detail_rules.DETAILS[name]), name
    assert _fields(types_pb2.FirebirdHealth.DESCRIPTOR) == set(detail_rules.FIREBIRD_HEALTH)
    assert set(ingest.DETAILS_OF_KIND) == set(ingest.ALL_KINDS)


def test_convert_hands_every_field_over() -> None:
    """The ...Input records carry every field the agent sends (none silently dropped)."""
    run_fields = {f.name for f in dataclasses.fields(ingest.RunInput)}
    sent = _fields(types_pb2.RunReport.DESCRIPTOR) - set(detail_rules.DETAILS)
    assert sent <= run_fields
    checkin_fields = {f.name for f in dataclasses.fields(ingest.CheckInInput)}
    assert _fields(agent_pb2.CheckInRequest.DESCRIPTOR) - {"site"} <= checkin_fields
    enroll_fields = {f.name for f in dataclasses.fields(ingest.EnrollInput)}
    assert _fields(agent_pb2.EnrollRequest.DESCRIPTOR) <= enroll_fields


def test_unknown_enum_values_reach_ingest_as_numbers() -> None:
    msg = types_pb2.RunReport(
        id="r-1", kind=77, outcome=0, backup=types_pb2.BackupDetails(verification=5)
    )
    raw = convert.run_input(msg)
    assert (raw.kind, raw.outcome, raw.verification) == ("77", "", "5")
    with pytest.raises(InvalidArgument, match=r"report\.kind: '77' is not one of"):
        ingest.run_record(raw, NOW)


def test_an_image_sync_report_with_every_figure_is_taken() -> None:
    details = {
        "files_scanned": "500",
        "files_copied": "4",
        "bytes_copied": "123456",
        "files_failed": "2",
        "files_new": "3",
        "files_changed": "1",
        "files_deleted": "0",
        "files_unchanged": "494",
        "bytes_read": "234567",
        "chunks_sent": "9",
        "snapshot_id": "ab" * 32,
        "folder_missing": False,
        "folder_empty": False,
        "skipped": {"locked": "1", "vanished": "1"},
        "stable_files": "480",
        "stable_changed": "1",
    }
    record = ingest.run_record(
        run(kind="image-sync", details_kind="image_sync", details=details), NOW
    )
    assert record.details == {"image_sync": details}


def drill(outcome: str = "succeeded", trigger: str = "drill", **details: Any) -> ingest.RunInput:
    body: dict[str, Any] = {
        "snapshot_id": "ab" * 32,
        "backup_run_id": "b-1",
        "checksum_ok": True,
        "restored": True,
        "table_counts": {"CUSTOMERS": "12"},
        "fetch_seconds": 1.5,
        **details,
    }
    return run(kind="drill", outcome=outcome, trigger=trigger, details_kind="drill", details=body)


def test_a_drill_is_an_admin_kind_with_its_details_and_consistent_outcome() -> None:
    record = ingest.drill_record(drill(), NOW)
    assert record.kind == "drill" and record.details["drill"]["backup_run_id"] == "b-1"
    assert ingest.drill_record(drill("failed", checksum_ok=False), NOW).outcome == "failed"
    # agents never report the admin kinds
    refused(lambda: ingest.run_record(drill(), NOW), "report.kind")
    refused(lambda: ingest.run_record(run(kind="store-check"), NOW), "report.kind")
    refused(lambda: ingest.drill_record(backup(), NOW), "report.kind")
    refused(lambda: ingest.drill_record(run(kind="drill"), NOW), "report.drill")
    refused(lambda: ingest.drill_record(drill(trigger="schedule"), NOW), "report.trigger")
    refused(lambda: ingest.drill_record(drill(checksum_ok=False), NOW), "report.outcome")
    refused(lambda: ingest.drill_record(drill(validation_errors=2), NOW), "report.outcome")
    refused(lambda: ingest.drill_record(drill(restored=False), NOW), "report.outcome")
    many = {f"T{i}": "1" for i in range(detail_rules.MAX_TABLES + 1)}
    refused(lambda: ingest.drill_record(drill(table_counts=many), NOW), "report.drill.table_counts")
    refused(
        lambda: ingest.drill_record(drill(backup_run_id="../x"), NOW), "report.drill.backup_run_id"
    )
    refused(lambda: ingest.drill_record(drill(host="h\x00"), NOW), "report.drill.host")
    refused(
        lambda: ingest.drill_record(drill(fetch_seconds=1e12), NOW), "report.drill.fetch_seconds"
    )
    refused(
        lambda: ingest.drill_record(drill(fetch_seconds="NaN"), NOW), "report.drill.fetch_seconds"
    )
    refused(
        lambda: ingest.drill_record(drill(table_counts={"T": "-5"}), NOW),
        "report.drill.table_counts['T']",
    )


def test_store_check_details_are_judged() -> None:
    def check(**details: Any) -> dict[str, Any]:
        return detail_rules.checked_fields(
            "report.store_check", details, detail_rules.STORE_CHECK_DETAILS
        )

    good = {
        "sample_percent": 12.5,
        "damaged_chunks": ["0" * 64],
        "broken_snapshots": ["a" * 64],
        "broken_backup_runs": ["r-1"],
        "chunks_checked": "40",
    }
    assert check(**good) == good
    for field, value in (
        ("sample_percent", 0),
        ("sample_percent", 100.5),
        ("sample_percent", "NaN"),
        ("damaged_chunks", ["../x"]),
        ("missing_chunks", ["0" * 64] * 101),
        ("broken_snapshots", [""]),
        ("broken_backup_runs", ["a b"]),
    ):
        with pytest.raises(InvalidArgument) as err:
            check(**{field: value})
        assert str(err.value).startswith(f"report.store_check.{field}"), (field, err.value)
