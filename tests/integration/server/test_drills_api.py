"""AdminService.RecordDrill end to end: a real server on loopback (SQLite and PostgreSQL),
real gRPC; drills stored as runs of kind drill, idempotent by id, audited, judged."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from storesafe.v1 import admin_pb2, agent_pb2, types_pb2

from tests.integration.server.test_offsite_api import agent_stub
from tests.support.server import ServerHandle, create_enrollment_token, enroll_agent

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def ts(when: dt.datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(when)
    return out


def drill_report(run_id: str = "d-0001", **details: Any) -> types_pb2.RunReport:
    outcome = details.pop("outcome", types_pb2.RUN_OUTCOME_SUCCEEDED)
    body: dict[str, Any] = dict(
        snapshot_id="cd" * 32,
        backup_run_id="b-0001",
        bytes_fetched=1000,
        backup_bytes=4000,
        checksum_ok=True,
        restored=True,
        host="tech-laptop",
        fetch_seconds=2.5,
        restore_seconds=7.25,
    )
    body.update(details)
    drill = types_pb2.DrillDetails(**body)
    drill.table_counts["CUSTOMERS"] = 120
    drill.table_counts["INVOICES"] = 4000
    return types_pb2.RunReport(
        id=run_id,
        kind=types_pb2.RUN_KIND_DRILL,
        started_at=ts(NOW - dt.timedelta(minutes=3)),
        finished_at=ts(NOW),
        outcome=outcome,
        trigger="drill",
        drill=drill,
    )


def record(
    server: ServerHandle, site: str, report: types_pb2.RunReport
) -> admin_pb2.RecordDrillResponse:
    return server.admin_stub().RecordDrill(
        admin_pb2.RecordDrillRequest(site=site, report=report),
        metadata=server.admin_metadata,
        timeout=10,
    )


def code_of(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details()


def runs(server: ServerHandle, site: str, kind: int = 0) -> list[admin_pb2.Run]:
    return list(
        server.admin_stub()
        .ListRuns(
            admin_pb2.ListRunsRequest(site=site, kind=kind),  # type: ignore[arg-type]
            metadata=server.admin_metadata,
            timeout=10,
        )
        .runs
    )


def test_a_drill_is_recorded_once_listed_and_audited(shared_server: ServerHandle) -> None:
    """On the shared SQLite server; test_offsite_runs_api records drills on PostgreSQL too."""
    server = shared_server
    create_enrollment_token(server, "drill-a")
    create_enrollment_token(server, "drill-b")
    first = drill_report()
    assert record(server, "drill-a", first).duplicate is False
    assert record(server, "drill-a", first).duplicate is True  # a replay changes nothing

    listed = runs(server, "drill-a", types_pb2.RUN_KIND_DRILL)
    assert [r.report.id for r in listed] == ["d-0001"]
    got = listed[0].report
    assert got.kind == types_pb2.RUN_KIND_DRILL and got.trigger == "drill"
    assert got.drill == first.drill  # every field back as sent
    assert runs(server, "drill-a", types_pb2.RUN_KIND_BACKUP) == []
    assert runs(server, "drill-b") == []

    audit = server.admin_stub().ListAudit(
        admin_pb2.ListAuditRequest(limit=1000), metadata=server.admin_metadata, timeout=10
    )
    recorded = [e for e in audit.entries if e.action == "drill.record" and e.target == "drill-a"]
    assert len(recorded) == 1  # the replay is not audited again
    assert recorded[0].target == "drill-a" and "run=d-0001" in recorded[0].details
    assert recorded[0].actor

    # a different report under a stored id, for this site or another: refused
    changed = drill_report(restore_seconds=99.0)
    assert code_of(lambda: record(server, "drill-a", changed))[0] == (
        grpc.StatusCode.ALREADY_EXISTS
    )
    assert code_of(lambda: record(server, "drill-b", first))[0] == (grpc.StatusCode.ALREADY_EXISTS)
    assert runs(server, "drill-b") == []
    # an agent's report id is taken too: a drill cannot overwrite it
    md = [("authorization", f"Bearer {enroll_agent(server, 'drill-c')}")]

    agent_stub(server).ReportRun(
        agent_pb2.ReportRunRequest(
            report=types_pb2.RunReport(
                id="b-0009",
                kind=types_pb2.RUN_KIND_BACKUP,
                started_at=ts(NOW - dt.timedelta(minutes=1)),
                finished_at=ts(NOW),
                outcome=types_pb2.RUN_OUTCOME_SUCCEEDED,
            )
        ),
        metadata=md,
        timeout=10,
    )
    assert code_of(lambda: record(server, "drill-a", drill_report("b-0009")))[0] == (
        grpc.StatusCode.ALREADY_EXISTS
    )
    # a drill naming another site's backup run is refused
    code, text = code_of(
        lambda: record(server, "drill-a", drill_report("d-0002", backup_run_id="b-0009"))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert text.startswith("report.drill.backup_run_id: run b-0009 is not a backup run")
    # ... and the same run is fine for its own site
    assert not record(server, "drill-c", drill_report("d-0003", backup_run_id="b-0009")).duplicate


@pytest.mark.parametrize(
    ("site", "report", "code", "starts"),
    [
        ("nobody-here", drill_report("d-x1"), grpc.StatusCode.NOT_FOUND, "there is no site"),
        ("../etc", drill_report("d-x2"), grpc.StatusCode.INVALID_ARGUMENT, "'../etc'"),
        ("drill-bad", drill_report("../../x"), grpc.StatusCode.INVALID_ARGUMENT, "report.id"),
        ("drill-bad", drill_report(""), grpc.StatusCode.INVALID_ARGUMENT, "report.id"),
        (
            "drill-bad",
            types_pb2.RunReport(
                id="d-x3",
                kind=types_pb2.RUN_KIND_BACKUP,
                started_at=ts(NOW),
                finished_at=ts(NOW),
                outcome=types_pb2.RUN_OUTCOME_SUCCEEDED,
                trigger="drill",
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "report.kind",
        ),
        (
            "drill-bad",
            types_pb2.RunReport(
                id="d-x4",
                kind=types_pb2.RUN_KIND_DRILL,
                started_at=ts(NOW),
                finished_at=ts(NOW),
                outcome=types_pb2.RUN_OUTCOME_FAILED,
                trigger="drill",
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "report.drill",
        ),
        (
            "drill-bad",
            drill_report("d-x5", checksum_ok=False),
            grpc.StatusCode.INVALID_ARGUMENT,
            "report.outcome",
        ),
        (
            "drill-bad",
            drill_report("d-x6", fetch_seconds=float("inf")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "report.drill.fetch_seconds",
        ),
        (
            "drill-bad",
            drill_report("d-x7", host="x" * 300),
            grpc.StatusCode.INVALID_ARGUMENT,
            "report.drill.host",
        ),
        (
            "drill-bad",
            drill_report("d-x8", snapshot_id="nope"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "report.drill.snapshot_id",
        ),
        (
            "drill-bad",
            drill_report("d-x9", validation_errors=-1),
            grpc.StatusCode.INVALID_ARGUMENT,
            "report.drill.validation_errors",
        ),
    ],
)
def test_bad_drills_get_a_precise_status(
    shared_server: ServerHandle,
    site: str,
    report: types_pb2.RunReport,
    code: grpc.StatusCode,
    starts: str,
) -> None:
    create_enrollment_token(shared_server, "drill-bad")
    got, text = code_of(lambda: record(shared_server, site, report))
    assert got == code, text
    assert text.startswith(starts), text
    assert runs(shared_server, "drill-bad", types_pb2.RUN_KIND_DRILL) == []


def test_a_drill_with_too_many_tables_or_a_future_end_is_refused(
    shared_server: ServerHandle,
) -> None:
    create_enrollment_token(shared_server, "drill-big")
    huge = drill_report("d-big")
    for i in range(2001):
        huge.drill.table_counts[f"T{i}"] = i
    assert code_of(lambda: record(shared_server, "drill-big", huge))[1].startswith(
        "report.drill.table_counts: 2003 tables"
    )
    future = drill_report("d-future")
    future.finished_at.CopyFrom(ts(NOW + dt.timedelta(days=3)))
    assert code_of(lambda: record(shared_server, "drill-big", future))[1].startswith(
        "report.finished_at"
    )
    unauthenticated = shared_server.admin_stub().RecordDrill
    with pytest.raises(grpc.RpcError) as err:
        unauthenticated(
            admin_pb2.RecordDrillRequest(site="drill-big", report=drill_report("d-anon")),
            metadata=[("authorization", "Bearer nope")],
            timeout=10,
        )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert runs(shared_server, "drill-big") == []
