"""File changes on run reports: decoded from the wire, checked, and a run's file state shown."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from storesafe.v1 import types_pb2

from common.errors import InvalidArgument
from server.domain.records import FileChange, RunRecord
from server.rpc.convert.admin import run_msg
from server.rpc.convert.agent import run_input
from server.services.agents import valid_run

NOW = dt.datetime(2026, 12, 4, 21, 0, tzinfo=dt.UTC)
NAME = "storesafe-shop-20261204T210000Z-gbak-0123abcd.fbk.zst"


def wire(*changes: types_pb2.BackupFileChange) -> types_pb2.RunReport:
    msg = types_pb2.RunReport(
        id="r-1",
        kind=types_pb2.RUN_KIND_FILE_CHECK,
        outcome=types_pb2.RUN_OUTCOME_FAILED,
        file_check=types_pb2.FileCheckDetails(files_checked=3, files_damaged=1),
        file_changes=list(changes),
    )
    msg.started_at.FromDatetime(NOW)
    msg.finished_at.FromDatetime(NOW)
    return msg


def test_a_file_check_report_decodes_with_its_changes() -> None:
    damaged = types_pb2.BackupFileChange(
        file=NAME, state=types_pb2.BACKUP_FILE_STATE_DAMAGED, reason="checksum"
    )
    rec = valid_run(run_input(wire(damaged)), NOW)
    assert rec.kind == "file-check"
    assert rec.details == {"file_check": {"files_checked": 3, "files_damaged": 1}}
    assert rec.file_changes == (FileChange(NAME, "damaged", "checksum"),)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            types_pb2.BackupFileChange(file="../../etc/passwd", state=2),
            r"report\.file_changes\[0\]\.file",
        ),
        (types_pb2.BackupFileChange(file="C:\\x.fbk", state=2), r"report\.file_changes\[0\]\.file"),
        (types_pb2.BackupFileChange(file="", state=2), r"report\.file_changes\[0\]\.file"),
        (types_pb2.BackupFileChange(file="a\x00b", state=2), r"report\.file_changes\[0\]\.file"),
        (types_pb2.BackupFileChange(file=NAME, state=0), r"report\.file_changes\[0\]\.state"),
        (types_pb2.BackupFileChange(file=NAME, state=99), r"report\.file_changes\[0\]\.state"),
        (types_pb2.BackupFileChange(file=NAME, state=1), r"report\.file_changes\[0\]\.state"),
        (
            types_pb2.BackupFileChange(file=NAME, state=2, reason="\x00"),
            r"file_changes\[0\]\.reason",
        ),
    ],
)
def test_a_bad_file_change_is_refused_naming_the_field(
    change: types_pb2.BackupFileChange, field: str
) -> None:
    with pytest.raises(InvalidArgument, match=field):
        valid_run(run_input(wire(change)), NOW)


def test_a_long_reason_is_cut_like_all_free_text() -> None:
    change = types_pb2.BackupFileChange(file=NAME, state=2, reason="x" * 501)
    assert valid_run(run_input(wire(change)), NOW).file_changes[0].reason == "x" * 500


def test_a_backup_runs_file_state_goes_out_to_the_admin_api() -> None:
    rec = RunRecord(
        id="b-1",
        kind="backup",
        started_at=NOW,
        finished_at=NOW,
        outcome="succeeded",
        verification="passed",
        error_class="",
        error_message="",
        trigger="schedule",
        details={"backup": {"file": f"C:\\Backups\\{NAME}.bad"}},
        site="shop",
        received_at=NOW,
    )
    assert rec.backup_file == NAME  # matched by the name the agent reports changes under
    assert run_msg(rec).file_state == types_pb2.BACKUP_FILE_STATE_UNSPECIFIED
    pruned = dataclasses.replace(rec, file_state="pruned")
    assert run_msg(pruned).file_state == types_pb2.BACKUP_FILE_STATE_PRUNED
