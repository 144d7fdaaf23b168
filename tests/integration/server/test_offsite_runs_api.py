"""Off-site copies in the fleet view, end to end on a real server (SQLite and PostgreSQL)
over real gRPC: upload runs stored and listed, the last off-site copy per site from the
committed database snapshots and the upload runs, drills in the fleet view, and
GetSnapshot by backup run."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from storesafe.v1 import admin_pb2, agent_pb2, types_pb2

from tests.integration.server.test_drills_api import drill_report
from tests.integration.server.test_offsite_api import agent_stub, bearer
from tests.support.offsite import SiteUpload, put_request, site_upload
from tests.support.server import ServerHandle, enroll_agent, start_server

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def ts(when: dt.datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(when)
    return out


def backup_run(run_id: str, finished: dt.datetime, size: int) -> types_pb2.RunReport:
    return types_pb2.RunReport(
        id=run_id,
        kind=types_pb2.RUN_KIND_BACKUP,
        started_at=ts(finished - dt.timedelta(minutes=5)),
        finished_at=ts(finished),
        outcome=types_pb2.RUN_OUTCOME_SUCCEEDED,
        trigger="schedule",
        backup=types_pb2.BackupDetails(
            method="gbak",
            file=f"{run_id}.fbk.zst",
            size_raw=size * 3,
            size_compressed=size,
            verification=types_pb2.VERIFICATION_PASSED,
            raw_checksum="sha256:" + "ab" * 32,
        ),
    )


def upload_run(run_id: str, finished: dt.datetime, **details: Any) -> types_pb2.RunReport:
    return types_pb2.RunReport(
        id=run_id,
        kind=types_pb2.RUN_KIND_UPLOAD,
        started_at=ts(finished - dt.timedelta(minutes=30)),
        finished_at=ts(finished),
        outcome=types_pb2.RUN_OUTCOME_SUCCEEDED,
        trigger="schedule",
        upload=types_pb2.UploadDetails(**details),
    )


def database_copy(
    server: ServerHandle, md: Any, site: str, run_id: str, when: dt.datetime
) -> SiteUpload:
    up = site_upload(site, {f"stream-00/part-{run_id}": f"{site} {run_id} ".encode() * 40})
    header = up.header(
        kind=agent_pb2.SNAPSHOT_KIND_DATABASE, backup_run_id=run_id, created_at=ts(when)
    )
    s = agent_stub(server)
    s.PutSiteKey(up.site_key_request(), metadata=md, timeout=10)
    s.PutChunks(iter([put_request(c) for c in up.chunks]), metadata=md, timeout=30)
    s.CommitSnapshot(iter(up.commit_requests(header=header)), metadata=md, timeout=30)
    return up


def at(rep: types_pb2.RunReport, finished: dt.datetime) -> None:
    rep.started_at.CopyFrom(ts(finished - dt.timedelta(minutes=5)))
    rep.finished_at.CopyFrom(ts(finished))


def summary(server: ServerHandle, site: str) -> admin_pb2.SiteSummary:
    listed = server.admin_stub().ListSites(
        admin_pb2.ListSitesRequest(), metadata=server.admin_metadata, timeout=10
    )
    (row,) = [s for s in listed.sites if s.site == site]
    one = server.admin_stub().GetSite(
        admin_pb2.GetSiteRequest(site=site), metadata=server.admin_metadata, timeout=10
    )
    assert one.summary == row  # `sites` and `site` say the same
    return row


def report(server: ServerHandle, md: Any, rep: types_pb2.RunReport) -> None:
    agent_stub(server).ReportRun(agent_pb2.ReportRunRequest(report=rep), metadata=md, timeout=10)


def code_of(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details()


def test_last_off_site_copy_upload_runs_drills_and_lookup_by_run(
    db_url: str, tmp_path: Path
) -> None:
    server = start_server(tmp_path, db_url=db_url)
    try:
        site, other = "offr-a", "offr-b"
        md = bearer(enroll_agent(server, site))
        md_other = bearer(enroll_agent(server, other))
        admin, amd = server.admin_stub(), server.admin_metadata
        t0 = NOW - dt.timedelta(hours=30)

        before = summary(server, site)
        assert not before.HasField("last_offsite_at") and before.last_offsite_backup_run_id == ""

        # day 1: backup, an upload paused by the window, the commit, the rest of the upload
        report(server, md, backup_run("b-day1", t0, 5000))
        paused = dict(
            file="b-day1.fbk.zst",
            bytes=15000,
            backup_run_id="b-day1",
            backup_size=5000,
            bytes_sent=300,
            chunks_sent=3,
            chunks_present=0,
            complete=False,
            paused_reason="window closed",
        )
        report(server, md, upload_run("u-day1-a", t0 + dt.timedelta(hours=1), **paused))
        assert summary(server, site).last_offsite_backup_run_id == ""  # nothing committed yet
        up1 = database_copy(server, md, site, "b-day1", t0 + dt.timedelta(hours=2))
        got = summary(server, site)
        assert got.last_offsite_at.ToDatetime(dt.UTC) == t0 + dt.timedelta(hours=2)
        assert (got.last_offsite_backup_run_id, got.last_offsite_bytes_sent) == ("b-day1", 300)
        assert got.last_offsite_backup_size == 5000
        done = dict(paused, bytes_sent=200, chunks_sent=2, chunks_present=3, complete=True)
        done.update(snapshot_id=up1.snapshot.snapshot_id, paused_reason="")
        report(server, md, upload_run("u-day1-b", t0 + dt.timedelta(hours=3), **done))
        got = summary(server, site)
        assert (got.last_offsite_bytes_sent, got.last_offsite_backup_size) == (500, 5000)

        # upload runs are listed with every field as sent
        uploads = admin.ListRuns(
            admin_pb2.ListRunsRequest(site=site, kind=types_pb2.RUN_KIND_UPLOAD),
            metadata=amd,
            timeout=10,
        ).runs
        assert [r.report.id for r in uploads] == ["u-day1-b", "u-day1-a"]
        assert uploads[0].report.upload == types_pb2.UploadDetails(**done)
        assert uploads[1].report.upload == types_pb2.UploadDetails(**paused)

        # day 2: the copy is committed before its backup's report arrives
        t1 = NOW - dt.timedelta(hours=4)
        database_copy(server, md, site, "b-day2", t1 + dt.timedelta(hours=1))
        got = summary(server, site)
        assert (got.last_offsite_backup_run_id, got.last_offsite_bytes_sent) == ("b-day2", 0)
        assert got.last_offsite_backup_size == 0
        report(server, md, backup_run("b-day2", t1, 7000))  # the size comes with it
        assert summary(server, site).last_offsite_backup_size == 7000
        # an older copy committed late does not move the last copy back
        database_copy(server, md, site, "b-day0", t0 - dt.timedelta(hours=20))
        assert summary(server, site).last_offsite_backup_run_id == "b-day2"
        # another site's upload run naming this site's backup changes nothing here
        report(
            server,
            md_other,
            upload_run("u-other", NOW, backup_run_id="b-day2", bytes_sent=10**9, complete=True),
        )
        assert summary(server, site).last_offsite_bytes_sent == 0
        assert summary(server, other).last_offsite_backup_run_id == ""

        # GetSnapshot by backup run: the newest database snapshot copying it
        by_run = admin.GetSnapshot(
            admin_pb2.GetSnapshotRequest(site=site, backup_run_id="b-day1"),
            metadata=amd,
            timeout=10,
        )
        assert by_run.snapshot.snapshot_id == up1.snapshot.snapshot_id
        assert by_run.record == up1.snapshot.record
        for req, code, text in (
            (
                admin_pb2.GetSnapshotRequest(site=site, backup_run_id="b-nope"),
                grpc.StatusCode.NOT_FOUND,
                "site offr-a has no off-site copy of backup run b-nope",
            ),
            (
                admin_pb2.GetSnapshotRequest(site=other, backup_run_id="b-day1"),
                grpc.StatusCode.NOT_FOUND,
                "site offr-b has no off-site copy of backup run b-day1",
            ),
            (
                admin_pb2.GetSnapshotRequest(site=site, backup_run_id="../x"),
                grpc.StatusCode.INVALID_ARGUMENT,
                "'../x' is not a run id",
            ),
            (
                admin_pb2.GetSnapshotRequest(
                    site=site, backup_run_id="b-day1", snapshot_id=up1.snapshot.snapshot_id
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "give a snapshot id or a backup run id, not both",
            ),
            (
                admin_pb2.GetSnapshotRequest(
                    site=site, backup_run_id="b-day1", kind=agent_pb2.SNAPSHOT_KIND_IMAGES
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "a backup run is copied by database snapshots only",
            ),
            (
                admin_pb2.GetSnapshotRequest(site="no-such-site", backup_run_id="b-day1"),
                grpc.StatusCode.NOT_FOUND,
                "there is no site named 'no-such-site'",
            ),
        ):
            got_code, got_text = code_of(
                lambda req=req: admin.GetSnapshot(req, metadata=amd, timeout=10)
            )
            assert got_code == code and got_text.startswith(text), got_text

        # drills in the fleet view
        ok = drill_report("d-ok", backup_run_id="b-day1")
        at(ok, NOW - dt.timedelta(hours=2))
        admin.RecordDrill(
            admin_pb2.RecordDrillRequest(site=site, report=ok), metadata=amd, timeout=10
        )
        got = summary(server, site)
        assert got.last_drill_at == got.last_drill_ok_at == ok.finished_at
        assert got.last_drill_outcome == types_pb2.RUN_OUTCOME_SUCCEEDED
        bad = drill_report(
            "d-bad", backup_run_id="b-day2", checksum_ok=False, outcome=types_pb2.RUN_OUTCOME_FAILED
        )
        at(bad, NOW - dt.timedelta(hours=1))
        admin.RecordDrill(
            admin_pb2.RecordDrillRequest(site=site, report=bad), metadata=amd, timeout=10
        )
        got = summary(server, site)
        assert got.last_drill_at == bad.finished_at and got.last_drill_ok_at == ok.finished_at
        assert got.last_drill_outcome == types_pb2.RUN_OUTCOME_FAILED
        # an older drill recorded late moves nothing
        old = drill_report("d-old")
        at(old, NOW - dt.timedelta(days=9))
        admin.RecordDrill(
            admin_pb2.RecordDrillRequest(site=site, report=old), metadata=amd, timeout=10
        )
        assert summary(server, site).last_drill_outcome == types_pb2.RUN_OUTCOME_FAILED
        assert summary(server, other).last_drill_outcome == types_pb2.RUN_OUTCOME_UNSPECIFIED
    finally:
        server.stop()


def test_agents_cannot_report_admin_kinds_or_bad_upload_details(
    shared_server: ServerHandle,
) -> None:
    md = bearer(enroll_agent(shared_server, "offr-bad"))
    for rep, field in (
        (drill_report("d-agent"), "report.kind"),
        (upload_run("u-bad1", NOW, backup_run_id="../../b"), "report.upload.backup_run_id"),
        (upload_run("u-bad2", NOW, snapshot_id="xyz"), "report.upload.snapshot_id"),
        (upload_run("u-bad3", NOW, paused_reason="a\x00b"), "report.upload.paused_reason"),
        (upload_run("u-bad4", NOW, file="../../etc/passwd"), "report.upload.file"),
    ):
        code, text = code_of(lambda rep=rep: report(shared_server, md, rep))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, text
        assert text.startswith(field), text
