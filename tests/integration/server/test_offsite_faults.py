"""The off-site upload service when the store fails (full, unreachable): a precise status,
nothing half committed, and a retry after the fault completes the work. The faults come
from tests/support/faulty_storage.py over the real filesystem store and real SQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import blake3
import grpc
import pytest
from sqlalchemy import insert

from common.errors import StoreSafeError
from server.db.engine import make_engine, migrate
from server.domain.records import AgentIdentity
from server.rpc.errors import status_of
from server.services.offsite import ChunkUpload, OffsiteUploads, SnapshotHeader
from server.state.store_state import SqlStoreState
from server.state.tables import SITES
from server.storage import BlobStore, StoreFull, StoreUnavailable
from server.storage.filesystem import FilesystemBackend
from tests.support.clock import FakeClock
from tests.support.faulty_storage import FaultyBackend
from tests.support.sealed import WHEN, site_upload

SITE = "fault-site"


def upload_of(chunk: object) -> ChunkUpload:
    blob: bytes = chunk.blob  # type: ignore[attr-defined]
    return ChunkUpload(chunk.chunk_id, blob, blake3.blake3(blob).digest(), "blake3")  # type: ignore[attr-defined]


async def batches(refs: Sequence[str]) -> AsyncIterator[Sequence[str]]:
    yield list(refs)


def status(call: object) -> grpc.StatusCode:
    with pytest.raises(StoreSafeError) as err:
        asyncio.run(call)  # type: ignore[arg-type]
    return status_of(err.value)


def test_a_full_or_unreachable_store_commits_nothing(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    with engine.begin() as conn:
        site_id = conn.execute(
            insert(SITES).values(name=SITE, group="default", created_at=WHEN).returning(SITES.c.id)
        ).scalar_one()
    who = AgentIdentity("agent-1", int(site_id), SITE)
    faulty = FaultyBackend(FilesystemBackend(tmp_path / "store"))
    store = BlobStore(faulty, workers=2)
    state = SqlStoreState(engine)
    uploads = OffsiteUploads(state, store, FakeClock(WHEN + dt.timedelta(hours=1)))
    up = site_upload(SITE)
    ids = [c.chunk_id for c in up.chunks]
    try:
        asyncio.run(store.check())
        faulty.fail("create", StoreFull("the blob store is full (No space left on device)"))
        assert status(uploads.put_chunk(who, upload_of(up.chunks[0]))) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        assert asyncio.run(uploads.missing_chunks(who, ids)) == ids  # not indexed
        assert not list((tmp_path / "store").rglob(ids[0]))  # and not stored
        faulty.fail("create", StoreUnavailable("the blob store could not be reached"))
        assert status(uploads.put_chunk(who, upload_of(up.chunks[0]))) == (
            grpc.StatusCode.UNAVAILABLE
        )
        for chunk in up.chunks:
            assert asyncio.run(uploads.put_chunk(who, upload_of(chunk))) is True
        asyncio.run(
            uploads.put_site_key(
                who,
                sealed_key=up.sealed_key,
                data_key_id=up.keys.key_id_hex,
                recovery_key_fingerprint=up.fleet.public.fingerprint,
            )
        )
        snap = up.snapshot
        header = SnapshotHeader(
            snapshot_id=snap.snapshot_id,
            record=snap.record,
            record_sha256=hashlib.sha256(snap.record).digest(),
            kind="images",
            data_key_id=up.keys.key_id_hex,
            created_at=WHEN,
            entries=snap.entries,
            size=snap.size,
            backup_run_id="",
            reference_count=len(snap.references),
        )
        refs = sorted(snap.references)
        # the store is full before the record, then again after it (before the
        # reference list): no snapshot row either time
        full = StoreFull("the blob store is full (No space left on device)")
        faulty.fail("create", full)
        assert status(uploads.commit_snapshot(who, header, batches(refs))) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        assert asyncio.run(state.snapshot(site_id, snap.snapshot_id)) is None
        before = faulty.calls["create"]
        faulty.fail("create", full, after=1)
        assert status(uploads.commit_snapshot(who, header, batches(refs))) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        assert faulty.calls["create"] == before + 2  # the record went in, the list did not
        assert asyncio.run(state.snapshot(site_id, snap.snapshot_id)) is None
        assert not list((tmp_path / "store").rglob(f"refs/{snap.snapshot_id}"))
        assert asyncio.run(uploads.commit_snapshot(who, header, batches(refs))) is False
        stored = asyncio.run(state.snapshot(site_id, snap.snapshot_id))
        assert stored is not None and stored.chunks == len(refs)
    finally:
        asyncio.run(store.close())
        engine.dispose()
