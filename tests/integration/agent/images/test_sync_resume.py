"""A pass cut by a lost server mid-upload commits nothing; the next pass sends only what is
missing. The capability runs in-process with the real transport; the server is real and is
stopped for real in the middle of the upload."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from storesafe.v1 import admin_pb2

from agent.capability import Setup
from agent.configsync import ConfigStore
from agent.domain.reports import Outcome
from agent.images.capability import ImageSync
from agent.settings import StateDir
from agent.transport.link import ServerLink
from agent.transport.store import StoreCalls
from common.clock import SystemClock
from common.vault import FleetPrivateKey
from tests.support.agent import enroll_agent
from tests.support.offsitestore import CutBeforePut
from tests.support.server import ServerHandle

MIB = 1 << 20


def stored_chunks(server: ServerHandle, site: str) -> set[str]:
    root = server.data_dir / "store" / "sites" / site / "chunks"
    return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def snapshot_ids(server: ServerHandle, site: str) -> list[str]:
    reply = server.admin_stub().ListSnapshots(
        admin_pb2.ListSnapshotsRequest(site=site), metadata=server.admin_metadata
    )
    return [s.snapshot_id for s in reply.snapshots]


def test_a_cut_upload_resumes_without_resending_what_arrived(
    server: ServerHandle, tmp_path: Path
) -> None:
    site = "img-cut"
    folder = tmp_path / "Images"
    folder.mkdir()
    for n in range(6):  # each file fills about one upload batch of its own
        (folder / f"scan-{n}.tif").write_bytes(os.urandom(MIB + 1000 * n))
    state = StateDir(tmp_path / "agent")
    assert enroll_agent(server, state.root, site).returncode == 0
    creds = state.load_credentials()
    config = ConfigStore(state.root)
    fleet = FleetPrivateKey.generate()
    values = {
        "images.dir": str(folder),
        "images.settle_seconds": 0,
        "upload.recovery_key": fleet.public.text,
    }
    config.apply(1, values)  # type: ignore[arg-type]
    links: list[CutBeforePut] = []

    def connect(cut_at: int) -> CutBeforePut:
        real = StoreCalls(ServerLink.for_agent(state, creds))
        links.append(CutBeforePut(real, before_put=cut_at, cut=lambda: server.stop()))
        return links[-1]

    def capability(cut_at: int) -> ImageSync:
        setup = Setup(
            config=config,
            clock=SystemClock(),
            state_dir=state.root,
            site=site,
            store_link=lambda: connect(cut_at),
        )
        return ImageSync(setup)

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
