"""PutChunks stored in batches (server.services.chunk_batch): one stream mixing new, known,
condemned and `deleting` chunks, a failing blob write, a digest mismatch and a cut
stream in the middle of a batch, each with the rules of one chunk at a time (the chunks
before the failure stored and indexed, none after it). Real SQL (SQLite and PostgreSQL),
the real filesystem store, its faults from tests/support/faulty_storage.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import blake3
import grpc
import pytest
from sqlalchemy import Engine, insert, select

from common.errors import StoreSafeError, Unavailable
from server.db.engine import make_engine, migrate
from server.domain import offsite as rules
from server.domain.offsite import ChunkRecord
from server.domain.records import AgentIdentity
from server.rpc.errors import status_of
from server.services.offsite import ChunkUpload, OffsiteUploads, UploadTotals
from server.state.store_gc_state import SqlStoreGcState
from server.state.store_state import SqlStoreState
from server.state.tables import CHUNKS, SITES
from server.storage import BlobStore, StoreFull
from server.storage.filesystem import FilesystemBackend
from tests.support.clock import FakeClock
from tests.support.faulty_storage import FaultyBackend

SITE = "batch-site"
WHEN = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def chunk(size: int = 300, algorithm: str = "blake3") -> ChunkUpload:
    data = os.urandom(size)
    chunk_id = hashlib.sha256(os.urandom(16)).hexdigest()
    return ChunkUpload(chunk_id, data, digest(data, algorithm), algorithm)


def digest(data: bytes, algorithm: str = "blake3") -> bytes:
    return blake3.blake3(data).digest() if algorithm == "blake3" else hashlib.sha256(data).digest()


class Fixture:
    """The upload service over real SQL and a faulty filesystem store."""

    def __init__(self, engine: Engine, root: Path) -> None:
        self.engine = engine
        with engine.begin() as conn:
            site_id = conn.execute(
                insert(SITES)
                .values(name=SITE, group="default", created_at=WHEN)
                .returning(SITES.c.id)
            ).scalar_one()
        self.who = AgentIdentity("agent-1", int(site_id), SITE)
        self.root = root
        self.faulty = FaultyBackend(FilesystemBackend(root))
        self.blobs = BlobStore(self.faulty, workers=2)
        self.state = SqlStoreState(engine)
        self.gc = SqlStoreGcState(engine)
        self.uploads = OffsiteUploads(self.state, self.blobs, FakeClock(WHEN))

    def put(self, chunks: Sequence[ChunkUpload]) -> UploadTotals:
        return asyncio.run(self.uploads.put_chunks(self.who, stream(chunks)))

    def refused(self, source: AsyncIterator[ChunkUpload]) -> StoreSafeError:
        with pytest.raises(StoreSafeError) as caught:
            asyncio.run(self.uploads.put_chunks(self.who, source))
        return caught.value

    def rows(self) -> dict[str, tuple[str, dt.datetime | None]]:
        with self.engine.connect() as conn:
            found = conn.execute(
                select(CHUNKS.c.chunk_id, CHUNKS.c.state, CHUNKS.c.condemned_at).where(
                    CHUNKS.c.site_id == self.who.site_id
                )
            )
            return {r.chunk_id: (r.state, r.condemned_at) for r in found}

    def digests(self) -> dict[str, tuple[str, str]]:
        """Per indexed chunk: (its digest algorithm, the hex digest) as the index holds them."""
        with self.engine.connect() as conn:
            found = conn.execute(
                select(CHUNKS.c.chunk_id, CHUNKS.c.digest_algorithm, CHUNKS.c.sha256).where(
                    CHUNKS.c.site_id == self.who.site_id
                )
            )
            return {r.chunk_id: (r.digest_algorithm, r.sha256) for r in found}

    def has_blob(self, up: ChunkUpload) -> bool:
        return (self.root / rules.chunk_name(SITE, up.chunk_id)).is_file()


async def stream(
    chunks: Sequence[ChunkUpload], *, then: BaseException | None = None
) -> AsyncIterator[ChunkUpload]:
    for up in chunks:
        yield up
    if then is not None:
        raise then


@pytest.fixture
def fx(db_url: str, tmp_path: Path) -> Iterator[Fixture]:
    engine = make_engine(db_url)
    migrate(engine)
    fixture = Fixture(engine, tmp_path / "store")
    try:
        yield fixture
    finally:
        asyncio.run(fixture.blobs.close())
        engine.dispose()


def test_a_stream_of_new_known_and_condemned_chunks_is_stored_in_one_batch(
    fx: Fixture,
) -> None:
    known, condemned = chunk(), chunk()
    fx.put([known, condemned])
    assert (
        asyncio.run(
            fx.gc.condemn(
                fx.who.site_id,
                [condemned.chunk_id],
                now=WHEN,
                stored_before=WHEN + dt.timedelta(hours=1),
            )
        )
        == 1
    )
    new = [chunk(n * 100 + 1) for n in range(40)]
    totals = fx.put([new[0], known, *new[1:20], condemned, new[0], *new[20:]])
    assert totals == UploadTotals(40, 3, sum(len(up.data) for up in new))
    rows = fx.rows()
    assert rows[condemned.chunk_id] == ("stored", None)  # used again: rescued
    assert {up.chunk_id for up in new} <= set(rows)
    assert all(fx.has_blob(up) for up in new)
    assert fx.faulty.calls["create"] == 42  # each new blob written once, nothing known


def test_a_deleting_chunk_mid_batch_is_unavailable_after_the_chunks_before_it(
    fx: Fixture,
) -> None:
    doomed, condemned = chunk(), chunk()
    fx.put([doomed, condemned])
    later = WHEN + dt.timedelta(hours=1)
    asyncio.run(
        fx.gc.condemn(
            fx.who.site_id, [doomed.chunk_id, condemned.chunk_id], now=WHEN, stored_before=later
        )
    )
    moved = asyncio.run(
        fx.gc.begin_deleting(fx.who.site_id, [doomed.chunk_id], condemned_before=later)
    )
    assert moved == [doomed.chunk_id]
    before, after = [chunk() for _ in range(3)], [chunk() for _ in range(3)]
    err = fx.refused(stream([*before, condemned, doomed, *after]))
    assert status_of(err) == grpc.StatusCode.UNAVAILABLE
    assert f"chunk {doomed.chunk_id} is being collected" in err.message
    rows = fx.rows()
    assert {up.chunk_id for up in before} <= set(rows)
    assert rows[condemned.chunk_id] == ("stored", None)
    assert rows[doomed.chunk_id][0] == "deleting"
    assert not {up.chunk_id for up in after} & set(rows)
    assert not any(fx.has_blob(up) for up in after)


def test_a_gc_orphan_placeholder_mid_batch_is_unavailable(
    fx: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GC holds a `deleting` row for what it takes for an orphan blob (no row yet) while
    the batch is written: that chunk alone is refused, the others are indexed."""
    orphan = chunk()
    before = [chunk() for _ in range(3)]
    index = fx.state.add_chunks

    async def racing(site_id: int, chunks: Sequence[ChunkRecord], now: dt.datetime) -> set[str]:
        assert await fx.gc.tombstone(site_id, orphan.chunk_id, WHEN)  # after the blobs
        return await index(site_id, chunks, now)

    monkeypatch.setattr(fx.state, "add_chunks", racing)
    err = fx.refused(stream([*before, orphan]))
    assert status_of(err) == grpc.StatusCode.UNAVAILABLE
    assert orphan.chunk_id in err.message
    rows = fx.rows()
    assert all(rows[up.chunk_id] == ("stored", None) for up in before)
    assert rows[orphan.chunk_id][0] == "deleting"


def test_a_failing_blob_write_mid_batch_indexes_nothing_of_that_batch(fx: Fixture) -> None:
    chunks = [chunk() for _ in range(6)]
    fx.faulty.fail("create", StoreFull("the blob store is full (No space left on device)"), after=3)
    err = fx.refused(stream(chunks))
    assert status_of(err) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert fx.rows() == {}  # a blob that may not be durable is never indexed
    assert not any(fx.has_blob(up) for up in chunks[3:])
    assert fx.put(chunks) == UploadTotals(3, 3, sum(len(up.data) for up in chunks[3:]))
    assert set(fx.rows()) == {up.chunk_id for up in chunks}


def test_a_digest_mismatch_mid_batch_keeps_the_chunks_before_it(fx: Fixture) -> None:
    known = chunk()
    fx.put([known])
    chunks = [chunk() for _ in range(5)]
    bad = ChunkUpload(chunks[2].chunk_id, chunks[2].data, digest(b"other"), "blake3")
    err = fx.refused(stream([chunks[0], known, chunks[1], bad, *chunks[3:]]))
    assert status_of(err) == grpc.StatusCode.INVALID_ARGUMENT
    assert "nothing was stored" in err.message and bad.chunk_id in err.message
    assert set(fx.rows()) == {known.chunk_id, chunks[0].chunk_id, chunks[1].chunk_id}
    assert not any(fx.has_blob(up) for up in chunks[2:])

    damaged = ChunkUpload(known.chunk_id, known.data + b"x", known.digest, "blake3")
    err = fx.refused(stream([chunks[2], damaged, chunks[3]]))  # a known one, damaged
    assert status_of(err) == grpc.StatusCode.INVALID_ARGUMENT
    assert f"chunk {known.chunk_id} does not hash to its stated blake3" in err.message
    assert chunks[2].chunk_id in fx.rows() and chunks[3].chunk_id not in fx.rows()


def test_sha256_chunks_of_older_agents_and_blake3_ones_are_each_checked_and_recorded(
    fx: Fixture,
) -> None:
    old, new = chunk(algorithm="sha256"), chunk()
    assert fx.put([old, new]) == UploadTotals(2, 0, len(old.data) + len(new.data))
    assert fx.digests() == {
        old.chunk_id: ("sha256", hashlib.sha256(old.data).hexdigest()),
        new.chunk_id: ("blake3", blake3.blake3(new.data).hexdigest()),
    }
    # a sha256 that does not match is refused as a blake3 one is: nothing stored
    wrong = chunk(algorithm="sha256")
    bad = ChunkUpload(wrong.chunk_id, wrong.data, digest(b"other", "sha256"), "sha256")
    err = fx.refused(stream([bad]))
    assert status_of(err) == grpc.StatusCode.INVALID_ARGUMENT
    assert "not the stated sha256:" in err.message
    assert bad.chunk_id not in fx.rows() and not fx.has_blob(bad)
    # sent again with the other digest: the same bytes are a duplicate (hashed with the
    # algorithm of the record to compare like with like), other bytes a conflict
    again = [
        ChunkUpload(old.chunk_id, old.data, digest(old.data), "blake3"),
        ChunkUpload(new.chunk_id, new.data, digest(new.data, "sha256"), "sha256"),
    ]
    assert fx.put(again) == UploadTotals(0, 2, 0)
    other = os.urandom(len(old.data))
    for up in (
        ChunkUpload(old.chunk_id, other, digest(other), "blake3"),
        ChunkUpload(new.chunk_id, other, digest(other, "sha256"), "sha256"),
    ):
        err = fx.refused(stream([up]))
        assert status_of(err) == grpc.StatusCode.ALREADY_EXISTS, err.message
    # a stated digest the bytes do not match is a mismatch whatever the record's algorithm
    err = fx.refused(stream([ChunkUpload(old.chunk_id, old.data, digest(other), "blake3")]))
    assert status_of(err) == grpc.StatusCode.INVALID_ARGUMENT
    assert "does not hash to its stated blake3" in err.message
    assert fx.digests()[old.chunk_id] == ("sha256", hashlib.sha256(old.data).hexdigest())


def test_a_stream_cut_mid_batch_keeps_what_arrived(fx: Fixture) -> None:
    chunks = [chunk() for _ in range(5)]
    cut = Unavailable("the agent's stream was cut")
    err = fx.refused(stream(chunks, then=cut))
    assert err is cut
    assert set(fx.rows()) == {up.chunk_id for up in chunks}
    assert all(fx.has_blob(up) for up in chunks)


def test_a_bad_field_mid_batch_keeps_the_chunks_before_it(fx: Fixture) -> None:
    chunks = [chunk() for _ in range(4)]
    bad = ChunkUpload("not-an-id", b"x", digest(b"x"), "blake3")
    err = fx.refused(stream([*chunks[:2], bad, *chunks[2:]]))
    assert status_of(err) == grpc.StatusCode.INVALID_ARGUMENT
    assert set(fx.rows()) == {up.chunk_id for up in chunks[:2]}


def test_a_slow_stream_is_stored_as_it_arrives(
    fx: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing waits for a full batch: the stream sends its next chunk only once the
    one before is indexed."""
    chunks = [chunk() for _ in range(3)]
    index = fx.state.add_chunks
    indexed: list[set[str]] = []

    async def body() -> UploadTotals:
        done = asyncio.Event()

        async def noted(site_id: int, records: Sequence[ChunkRecord], now: dt.datetime) -> set[str]:
            added = await index(site_id, records, now)
            indexed.append(added)
            done.set()
            return added

        async def one_at_a_time() -> AsyncIterator[ChunkUpload]:
            for up in chunks:
                yield up
                await done.wait()
                done.clear()

        monkeypatch.setattr(fx.state, "add_chunks", noted)
        return await asyncio.wait_for(fx.uploads.put_chunks(fx.who, one_at_a_time()), 60)

    assert asyncio.run(body()).stored == 3
    assert indexed == [{up.chunk_id} for up in chunks]
