"""The server's fast proto conversions give exactly what protobuf's own give."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from google.protobuf import json_format
from storesafe.v1 import types_pb2

from common.errors import InvalidArgument
from server.rpc.convert.protodict import message_dict
from server.rpc.convert.stamps import from_ts


def _reference(msg: Any) -> dict[str, Any]:
    out: dict[str, Any] = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    return out


def _full_backup() -> types_pb2.BackupDetails:
    return types_pb2.BackupDetails(
        method="gbak",
        level=1,
        file="shop-20261127.fbk.zst",
        size_raw=2**40 + 3,
        size_compressed=123_456_789,
        checksum="sha256:" + "ab" * 32,
        verification=types_pb2.VERIFICATION_PASSED,
        verification_seconds=12.25,
        verification_message="fine",
        table_counts={"CUSTOMERS": 1200, "PAYMENTS": 2**33},
        firebird_version="WI-V3.0.11",
        database="C:\\Shop\\SHOP.FDB",
        health=types_pb2.FirebirdHealth(
            oit=-5, oat=7, next_transaction=2**50, forced_writes=True, page_size=8192, ods="12.0"
        ),
        problems=["rows dropped in PAYMENTS", "second"],
        backup_seconds=0.1,
    )


@pytest.mark.parametrize(
    "msg",
    [
        _full_backup(),
        types_pb2.BackupDetails(),
        types_pb2.BackupDetails(verification=types_pb2.Verification.Value("VERIFICATION_FAILED")),
        types_pb2.ImageSyncDetails(files_scanned=10, bytes_copied=2**45),
        types_pb2.ValidationDetails(errors=-1, warnings=3, summary="Validation: 0 errors"),
        types_pb2.UploadDetails(file="x", bytes=1),
        types_pb2.BackupDetails(verification=99),  # type: ignore[arg-type]  # an enum number this server does not know
        types_pb2.BackupDetails(verification_seconds=float("nan")),  # not finite: slow path
        types_pb2.BackupDetails(backup_seconds=float("inf")),
    ],
)
def test_message_dict_matches_message_to_dict(msg: Any) -> None:
    assert message_dict(msg) == _reference(msg)
    assert list(message_dict(msg)) == list(_reference(msg))  # same key order


def test_message_dict_matches_on_random_subsets() -> None:
    rng = random.Random(7)
    full = _full_backup()
    names = [f.name for f, _ in full.ListFields()]
    for _ in range(200):
        msg = types_pb2.BackupDetails()
        msg.CopyFrom(full)
        for name in rng.sample(names, rng.randrange(len(names) + 1)):
            msg.ClearField(name)  # type: ignore[arg-type]
        assert message_dict(msg) == _reference(msg)


def test_from_ts_matches_to_datetime_and_refuses_what_it_cannot_hold() -> None:
    rng = random.Random(7)
    low, high = -62_135_596_800, 253_402_300_799  # 0001-01-01 .. 9999-12-31
    for seconds in [low, high, 0, -1, *(rng.randint(low, high) for _ in range(500))]:
        report = types_pb2.RunReport()
        report.started_at.seconds = seconds
        report.started_at.nanos = rng.randrange(1_000_000_000)
        want = report.started_at.ToDatetime(tzinfo=dt.UTC)
        assert from_ts(report, "started_at") == want
    assert from_ts(types_pb2.RunReport(), "started_at") is None
    report = types_pb2.RunReport()
    report.finished_at.seconds = 10**12
    with pytest.raises(InvalidArgument, match="finished_at: is not a valid timestamp"):
        from_ts(report, "finished_at")


def test_a_site_summary_carries_every_field_the_row_has() -> None:
    """Every SiteSummary field is filled from the site's row (nothing the CLI could show
    is dropped on the way): a row with every fact set gives a message with every field set."""
    from storesafe.v1 import admin_pb2

    from server.domain.records import SiteRow, SiteView
    from server.domain.status import SiteStatus, Status
    from server.rpc.convert.admin import site_summary

    when = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
    row = SiteRow(
        id=1,
        name="shop-1",
        group="north",
        hostname="pos-1",
        os="Windows 10",
        agent_version="1.2.0",
        enrolled_at=when,
        last_seen_at=when,
        last_backup_at=when,
        last_backup_ok=True,
        last_backup_error="",
        last_backup_size=5,
        last_good_backup_at=when,
        last_image_sync_at=when,
        last_image_sync_ok=True,
        last_image_sync_error="",
        last_validation_errors=0,
        last_validation_summary="",
        clock_skew_seconds=0.0,
        config_revision_applied=3,
        outbox_pending=0,
        disks=(),
        firebird=None,
        last_offsite_at=when,
        last_offsite_backup_run_id="b-1",
        last_offsite_backup_at=when,
        last_offsite_bytes_sent=100,
        last_offsite_backup_size=1000,
        last_drill_at=when,
        last_drill_outcome="failed",
        last_drill_ok_at=when - dt.timedelta(days=30),
        last_store_check_at=when,
        store_damaged_chunks=2,
        store_damage_summary="backup b-1 cannot be restored",
    )
    msg = site_summary(SiteView(row, SiteStatus(Status.WARNING, ("p",)), 4))
    unset = [
        f.name
        for f in admin_pb2.SiteSummary.DESCRIPTOR.fields
        if not (msg.HasField(f.name) if f.message_type else bool(getattr(msg, f.name)))
    ]
    assert unset == []
    assert msg.last_drill_outcome == types_pb2.RUN_OUTCOME_FAILED
    assert msg.last_offsite_at.ToDatetime(dt.UTC) == when
