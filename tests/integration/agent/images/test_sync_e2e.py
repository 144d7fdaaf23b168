"""Image sync end to end: a real agent process, a real server on loopback, a real temp folder.

The recovery key goes to the agent as configuration; `sync-now` is sent as a
remote command; the server stores the sealed chunks in its filesystem store
and records the snapshot and the image-sync run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from storesafe.v1 import admin_pb2, agent_pb2
from typer.testing import CliRunner

from agent.datakey import DataKeyFile
from cli.main import app
from common.vault import IMAGES, FleetPrivateKey, SiteKeys
from common.vault.chunking import chunk_bytes
from tests.support.agent import AgentProcess, agent_cli, enroll_agent, wait_for
from tests.support.server import ServerHandle, set_config, stored_chunks

MIB = 1 << 20


def command_state(server: ServerHandle, site: str, command_id: str) -> admin_pb2.CommandState:
    cmds = (
        server.admin_stub()
        .ListCommands(admin_pb2.ListCommandsRequest(site=site), metadata=server.admin_metadata)
        .commands
    )
    return next(c for c in cmds if c.id == command_id)


def sync_now(server: ServerHandle, site: str) -> admin_pb2.CommandState:
    sent = server.admin_stub().SendCommand(
        admin_pb2.SendCommandRequest(site=site, kind=agent_pb2.COMMAND_KIND_SYNC_NOW),
        metadata=server.admin_metadata,
    )

    def done() -> bool:
        return bool(command_state(server, site, sent.command_id).finished_at.seconds)

    wait_for(done, 120, "the sync-now command to finish")
    return command_state(server, site, sent.command_id)


def chunk_ids(keys: SiteKeys, data: bytes) -> set[str]:
    """The keyed ids of `data`'s chunks as the site's image chunker cuts it."""
    return {keys.chunk_id(c) for c in chunk_bytes(data, IMAGES, keys.chunker_seed)}


def snapshots(server: ServerHandle, site: str) -> list[admin_pb2.SnapshotSummary]:
    return list(
        server.admin_stub()
        .ListSnapshots(admin_pb2.ListSnapshotsRequest(site=site), metadata=server.admin_metadata)
        .snapshots
    )


def image_runs(server: ServerHandle, site: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(
        app, ["runs", site, "--kind", "image-sync", "--json"], env=server.cli_env
    )
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def test_remote_sync_now_uploads_then_sends_nothing_then_only_a_changed_files_chunks(
    server: ServerHandle, tmp_path: Path
) -> None:
    site = "img-shop"
    folder = tmp_path / "Images"
    (folder / "2026").mkdir(parents=True)
    (folder / "id-card.jpg").write_bytes(os.urandom(200_000))
    big = bytearray(os.urandom(5 * MIB))
    (folder / "2026" / "contract.pdf").write_bytes(bytes(big))
    (folder / "2026" / "empty.txt").write_bytes(b"")
    fleet = FleetPrivateKey.generate()
    state = tmp_path / "agent"
    assert enroll_agent(server, state, site).returncode == 0
    agent = AgentProcess.start(state, interval=0.5)
    try:
        rev = set_config(
            server,
            admin_pb2.CONFIG_SCOPE_SITE,
            site,
            images__dir=str(folder),
            images__settle_seconds="0",
            upload__recovery_key=fleet.public.text,
        ).revision
        wait_for(lambda: agent.status().get("config_revision") == rev, 30, "config applied")

        first = sync_now(server, site)
        assert first.state == "succeeded", first.message
        after_first = stored_chunks(server, site)
        [snap] = snapshots(server, site)
        assert snap.entries == 3 and snap.size == 200_000 + 5 * MIB
        assert len(after_first) == snap.chunks >= 4  # content and the manifest part

        second = sync_now(server, site)
        assert second.state == "succeeded", second.message
        assert f"unchanged since snapshot {snap.snapshot_id[:12]}" in second.message
        assert stored_chunks(server, site) == after_first  # nothing new was stored
        assert len(snapshots(server, site)) == 1  # and no snapshot committed

        keys = DataKeyFile(state, site).keys()  # the agent's, to cut as it cuts
        old_ids = chunk_ids(keys, bytes(big))
        big[100:200] = os.urandom(100)
        (folder / "2026" / "contract.pdf").write_bytes(bytes(big))
        new_ids = chunk_ids(keys, bytes(big))
        assert 1 <= len(new_ids - old_ids) < len(new_ids)
        third = sync_now(server, site)
        assert third.state == "succeeded", third.message
        new = stored_chunks(server, site) - after_first
        assert new_ids - old_ids <= new  # the changed chunks, and the new manifest part
        assert len(new) == len(new_ids - old_ids) + 1

        wait_for(lambda: len(image_runs(server, site)) == 3, 30, "three image-sync runs")
        runs = image_runs(server, site)  # newest first
        assert all(r["outcome"] == "succeeded" and r["trigger"] == "remote" for r in runs)
        figures = [r["details"] for r in reversed(runs)]
        assert figures[0]["files_scanned"] == 3 and figures[0]["files_copied"] == 3
        assert figures[0]["files_new"] == 3 and figures[0]["bytes_read"] == 200_000 + 5 * MIB
        assert figures[0]["bytes_copied"] >= 5 * MIB
        assert figures[0]["snapshot_id"] == snap.snapshot_id
        assert figures[1]["files_unchanged"] == 3
        assert figures[1]["snapshot_id"] == "" and not figures[1]["incomplete"]
        assert figures[1]["current_snapshot_id"] == snap.snapshot_id
        assert figures[1]["summary"] == f"unchanged since snapshot {snap.snapshot_id[:12]}"
        assert figures[2]["current_snapshot_id"] == figures[2]["snapshot_id"] != ""
        assert (figures[1]["files_copied"], figures[1]["bytes_copied"]) == (0, 0)
        assert (figures[1]["chunks_sent"], figures[1]["bytes_read"]) == (0, 0)
        assert figures[2]["files_changed"] == 1 and figures[2]["files_copied"] == 1
        assert figures[2]["bytes_read"] == 5 * MIB
        assert figures[2]["chunks_sent"] == len(new)
        assert figures[2]["bytes_copied"] == sum(
            p.stat().st_size
            for p in (server.data_dir / "store" / "sites" / site / "chunks").rglob("*")
            if p.name in new
        )
        assert not figures[2]["folder_missing"] and not figures[2]["folder_empty"]

        # the local command beside the running agent: one more pass, reported at once
        (folder / "new-scan.png").write_bytes(os.urandom(30_000))
        local = agent_cli("sync-now", "--state-dir", str(state))
        assert local.returncode == 0, local.stderr
        assert "image sync succeeded: 4 files seen, 1 stored" in local.stdout
        assert "Reported to the server." in local.stdout
        newest = image_runs(server, site)[0]
        assert newest["trigger"] == "local" and newest["details"]["files_copied"] == 1
        assert len(snapshots(server, site)) == 3  # the first, the third, the local pass
        assert agent.alive()
    finally:
        agent.stop()
