"""A pass cut by a lost server mid-upload commits nothing; the next pass sends only what is
missing. A chunk the server lost (collected) is found at the next commit and sent again.
The capability runs in-process with the real transport; the server is real and is stopped
for real in the middle of the upload."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
from pathlib import Path

import blake3
import pytest
from storesafe.v1 import admin_pb2

from agent.datakey import DataKeyFile
from agent.domain.offsite import ChunkUpload, StoreLink
from agent.domain.reports import ImageSyncDetails, Outcome
from agent.images.capability import ImageSync
from agent.settings import StateDir
from agent.transport.link import ServerLink
from agent.transport.store import StoreCalls
from common.vault import IMAGES
from common.vault.chunking import chunk_bytes
from server.domain.offsite import chunk_name
from server.statebackup import SQLITE_NAME
from tests.support.agent import enroll_agent, image_sync_for
from tests.support.offsitestore import CutBeforePut
from tests.support.server import ServerHandle, stored_chunks

MIB = 1 << 20


def snapshot_ids(server: ServerHandle, site: str) -> list[str]:
    reply = server.admin_stub().ListSnapshots(
        admin_pb2.ListSnapshotsRequest(site=site), metadata=server.admin_metadata
    )
    return [s.snapshot_id for s in reply.snapshots]


def test_a_cut_upload_resumes_without_resending_what_arrived(
    server: ServerHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.images.uploader.SEND_AFTER_FILE", 128 << 10)  # a batch a file
    site = "img-cut"
    folder = tmp_path / "Images"
    folder.mkdir()
    for n in range(6):  # each file fills about one upload batch of its own
        (folder / f"scan-{n}.tif").write_bytes(os.urandom(MIB + 1000 * n))
    make = image_sync_for(server, StateDir(tmp_path / "agent"), site, folder)
    links: list[CutBeforePut] = []

    def capability(cut_at: int) -> ImageSync:
        def cut(real: StoreLink) -> StoreLink:
            links.append(CutBeforePut(real, before_put=cut_at, cut=lambda: server.stop()))
            return links[-1]

        return make(cut)

    cut = asyncio.run(capability(cut_at=3).sync("local"))
    assert cut.outcome is Outcome.FAILED
    assert "cannot reach" in cut.error_message or "did not answer" in cut.error_message
    arrived = links[0].delivered
    assert len(arrived) >= 2

    server.start()
    assert snapshot_ids(server, site) == []  # nothing half committed
    assert stored_chunks(server, site) == set(arrived)

    resumed = asyncio.run(capability(cut_at=0).sync("local"))
    assert resumed.outcome is Outcome.SUCCEEDED, resumed.error_message
    sent_again = links[1].delivered
    assert not set(sent_again) & set(arrived)  # nothing that arrived went twice
    assert len(sent_again) == len(set(sent_again))
    assert stored_chunks(server, site) == set(arrived) | set(sent_again)
    assert len(snapshot_ids(server, site)) == 1


def test_a_chunk_the_server_lost_is_sent_again_and_only_it(
    shared_server: ServerHandle, tmp_path: Path
) -> None:
    server = shared_server  # its own site; the server keeps no cache of the blob index
    site = "img-lost"
    folder = tmp_path / "Images"
    folder.mkdir()
    lost_file = os.urandom(40_000)
    (folder / "a.jpg").write_bytes(os.urandom(40_000))
    (folder / "b.jpg").write_bytes(lost_file)
    state = StateDir(tmp_path / "agent")
    links: list[CutBeforePut] = []

    def record(real: StoreLink) -> StoreLink:  # never cut: it records what each pass sent
        links.append(CutBeforePut(real, before_put=0, cut=lambda: None))
        return links[-1]

    sync = image_sync_for(server, state, site, folder)(record)
    first = asyncio.run(sync.sync("local"))
    assert first is not None and first.outcome is Outcome.SUCCEEDED, first.error_message

    # the server loses b.jpg's chunk (what a collection of a chunk no snapshot of the
    # server's own references looks like): its row in the blob index and its blob
    keys = DataKeyFile(state.root, site).keys()
    [lost] = {keys.chunk_id(c) for c in chunk_bytes(lost_file, IMAGES, keys.chunker_seed)}
    db = sqlite3.connect(server.data_dir / SQLITE_NAME, timeout=30)
    try:
        with db:
            deleted = db.execute("DELETE FROM store_chunks WHERE chunk_id = ?", (lost,))
            assert deleted.rowcount == 1
    finally:
        db.close()
    (server.data_dir / "store" / chunk_name(site, lost)).unlink()
    (folder / "c.jpg").write_bytes(os.urandom(30_000))  # a change, so the next pass commits

    refused = asyncio.run(sync.sync("local"))
    assert refused is not None and refused.outcome is Outcome.FAILED
    assert "references 1 chunk(s) this site has not stored" in refused.error_message
    assert "the server lacks 1 chunks of 1 files stored earlier" in refused.error_message
    assert len(snapshot_ids(server, site)) == 1

    repaired = asyncio.run(sync.sync("local"))
    assert repaired is not None and repaired.outcome is Outcome.SUCCEEDED
    assert isinstance(repaired.details, ImageSyncDetails)
    assert repaired.details.files_copied == 1  # b.jpg read again; a.jpg and c.jpg not
    # only the lost chunk: the manifest part went with the refused commit already
    assert links[-1].delivered == [lost]
    assert lost in stored_chunks(server, site)
    assert len(snapshot_ids(server, site)) == 2


def test_a_sealed_chunk_over_4_mib_goes_through_the_agent_transport(
    shared_server: ServerHandle, tmp_path: Path
) -> None:
    """An incompressible images chunk of the profile's largest size (4 MiB) seals to a
    little more than 4 MiB: the agent's channel must send it (the server takes 16 MiB)."""
    site = "img-large-chunk"
    state = StateDir(tmp_path / "agent")
    assert enroll_agent(shared_server, state.root, site).returncode == 0
    creds = state.load_credentials()
    data = os.urandom(4 * MIB + 4096)
    chunk = ChunkUpload(hashlib.sha256(data).hexdigest(), data, blake3.blake3(data).digest())

    async def go() -> tuple[int, list[str]]:
        calls = StoreCalls(ServerLink.for_agent(state, creds))
        try:
            put = await calls.put_chunks([chunk])
            return put.stored, await calls.missing_chunks([chunk.chunk_id])
        finally:
            await calls.close()

    assert asyncio.run(go()) == (1, [])
