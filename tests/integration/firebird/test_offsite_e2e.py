"""The off-site upload end to end: a real agent process runs a remote backup-now; the backup
that passes verification wakes the upload at once, whose report reaches the server beside
the backup's, naming it, and the server holds the database snapshot of that backup run."""

from __future__ import annotations

from pathlib import Path

import pytest
from storesafe.v1 import admin_pb2, agent_pb2, types_pb2

from common.firebird.connection import FirebirdTarget
from common.vault import FleetPrivateKey
from tests.support.agent import AgentProcess, enroll_agent, wait_for
from tests.support.server import ServerHandle, rollout, set_config

pytestmark = pytest.mark.firebird


def runs(server: ServerHandle, site: str, kind: int) -> list[admin_pb2.Run]:
    request = admin_pb2.ListRunsRequest(site=site, kind=kind)
    return list(server.admin_stub().ListRuns(request, metadata=server.admin_metadata).runs)


def test_a_verified_backup_is_uploaded_by_the_running_agent_and_reported(
    shared_server: ServerHandle, shop: FirebirdTarget, backup_dir: Path, tmp_path: Path
) -> None:
    server, site = shared_server, "offsite-e2e"
    state = tmp_path / "agent"
    assert enroll_agent(server, state, site).returncode == 0
    agent = AgentProcess.start(state, interval=2.0)
    try:
        rev = set_config(
            server,
            admin_pb2.CONFIG_SCOPE_SITE,
            site,
            firebird__database=shop.database,
            firebird__password=shop.password,
            backup__dir=str(backup_dir),
            upload__enabled="true",
            upload__recovery_key=FleetPrivateKey.generate().public.text,
        ).revision
        wait_for(lambda: rollout(server)[site].applied_revision == rev, 30, "config applied")
        server.admin_stub().SendCommand(
            admin_pb2.SendCommandRequest(site=site, kind=agent_pb2.COMMAND_KIND_BACKUP_NOW),
            metadata=server.admin_metadata,
        )
        wait_for(lambda: bool(runs(server, site, types_pb2.RUN_KIND_UPLOAD)), 180, "the upload")
        [backup] = runs(server, site, types_pb2.RUN_KIND_BACKUP)
        [upload] = runs(server, site, types_pb2.RUN_KIND_UPLOAD)
        assert backup.report.backup.raw_checksum.startswith("sha256:")
        assert upload.report.outcome == types_pb2.RUN_OUTCOME_SUCCEEDED, upload.report
        assert upload.report.trigger == "after-backup"  # woken, not found by the poll
        details = upload.report.upload
        assert details.complete and details.backup_run_id == backup.report.id
        assert details.file == backup.report.backup.file
        snaps = server.admin_stub().ListSnapshots(
            admin_pb2.ListSnapshotsRequest(site=site, kind=agent_pb2.SNAPSHOT_KIND_DATABASE),
            metadata=server.admin_metadata,
        )
        [snap] = snaps.snapshots
        assert (snap.snapshot_id, snap.backup_run_id) == (details.snapshot_id, backup.report.id)
        # the fleet view tells the truth about the copy, with upload.enabled on
        row = (
            server.admin_stub()
            .GetSite(admin_pb2.GetSiteRequest(site=site), metadata=server.admin_metadata)
            .summary
        )
        assert row.last_offsite_backup_run_id == backup.report.id
        assert row.last_offsite_at == snap.created_at
        assert row.last_offsite_bytes_sent == details.bytes_sent > 0
        assert row.last_offsite_backup_size == details.backup_size > 0
        assert not [p for p in row.problems if "off-site" in p or "left the shop" in p]
        assert agent.alive()
    finally:
        agent.stop()
