"""CommitSnapshot through the agent's real transport to a real server, its references read from
a file (agent.offsite.refspool.DistinctIds) as the stream goes: every reference arrives, in
messages the server takes."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
from pathlib import Path

import pytest

from agent.datakey import DataKeyFile
from agent.domain.offsite import MAX_REFERENCES, SnapshotCommit, SnapshotKind
from agent.offsite.refspool import DistinctIds
from agent.offsite.sitekey import site_keys
from agent.settings import StateDir
from agent.transport.link import ServerLink
from agent.transport.store import StoreCalls
from common.errors import FailedPrecondition
from common.vault import FleetPrivateKey
from tests.support.agent import enroll_agent
from tests.support.server import ServerHandle


def test_every_reference_of_a_file_backed_commit_reaches_the_server(
    shared_server: ServerHandle, tmp_path: Path
) -> None:
    """The server counts the distinct references of the whole stream against the header
    before it looks them up: a refusal naming all of them as missing (not a count that
    disagrees) shows that every batch arrived."""
    site = "commit-file-refs"
    state = StateDir(tmp_path / "agent")
    assert enroll_agent(shared_server, state.root, site).returncode == 0
    creds = state.load_credentials()
    key_file = DataKeyFile(state.root, site)
    count = 2 * MAX_REFERENCES + 321  # three messages, the last one short
    ids = DistinctIds.build(tmp_path / "ids.bin", (os.urandom(32) for _ in range(count)))
    assert len(ids) == count
    record = b"a record the server stores only after every reference is found"

    async def commit() -> None:
        link = StoreCalls(ServerLink.for_agent(state, creds))
        try:
            keys = await site_keys(link, key_file, FleetPrivateKey.generate().public)
            await link.commit_snapshot(
                SnapshotCommit(
                    snapshot_id=keys.snapshot_id(record),
                    record=record,
                    record_sha256=hashlib.sha256(record).digest(),
                    kind=SnapshotKind.IMAGES,
                    data_key_id=keys.key_id_hex,
                    created_at=dt.datetime.now(dt.UTC),
                    entries=0,
                    size=0,
                    references=ids,
                )
            )
        finally:
            await link.close()

    with pytest.raises(FailedPrecondition, match=f"references {count} chunk"):
        asyncio.run(commit())
