"""The agent's upload pipeline (agent.offsite.inflight) against a real server on loopback.

One PutChunks call is held at a gate on its way (tests.support.offsitestore.GatedLink
around the real transport), and the tests watch what the uploader does meanwhile: it
asks about and seals the next batch, at most one batch unconfirmed; a batch that
fails in flight surfaces as the server's typed error, nothing more is sent and
nothing is counted stored; a stop waits for the batch in flight; an image-sync pass
whose batch fails in flight keeps no row naming a chunk that did not arrive, reports
nothing stored, and the next pass sends nothing twice.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from agent.domain.offsite import StoreLink
from agent.domain.reports import ImageSyncDetails, Outcome
from agent.offsite.bandwidth import TokenBucket
from agent.offsite.inflight import IN_FLIGHT
from agent.offsite.uploader import LoopStore, Uploader, UploadStopped
from agent.settings import StateDir
from agent.transport.link import ServerLink
from agent.transport.store import StoreCalls
from common.clock import SystemClock
from common.errors import InvalidArgument, StoreSafeError
from common.vault import PlainChunk, SiteKeys, new_data_key
from tests.support.agent import enroll_agent, image_sync_for
from tests.support.offsitestore import CutBeforePut, GatedLink
from tests.support.server import ServerHandle, stored_chunks

T = TypeVar("T")
CHUNK = 100_000  # bytes a chunk; a batch of CHUNK bytes holds one chunk


def on(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run_coroutine_threadsafe(coro, loop).result(60)


def agent_link(
    server: ServerHandle, tmp_path: Path, site: str, loop: asyncio.AbstractEventLoop
) -> StoreCalls:
    """The real store calls of an agent enrolled for `site`, made on `loop`."""
    state = StateDir(tmp_path / "agent")
    assert enroll_agent(server, state.root, site).returncode == 0
    creds = state.load_credentials()

    async def make() -> StoreCalls:
        return StoreCalls(ServerLink.for_agent(state, creds))

    return on(loop, make())


def plain(keys: SiteKeys) -> PlainChunk:
    data = os.urandom(CHUNK)
    return PlainChunk(keys.chunk_id(data), data, try_compress=False)


def uploader_over(
    link: GatedLink, loop: asyncio.AbstractEventLoop, keys: SiteKeys, **kw: Any
) -> Uploader:
    bucket = TokenBucket(0, clock=SystemClock(), sleep=lambda s: None)
    uploader = Uploader(keys, LoopStore(link, loop), bucket, batch_bytes=CHUNK, **kw)
    link.watch = lambda: uploader.batches  # batches handed over, at each event
    return uploader


def missing(link: StoreLink, loop: asyncio.AbstractEventLoop, chunks: list[PlainChunk]) -> set[str]:
    return set(on(loop, link.missing_chunks([c.chunk_id for c in chunks])))


def test_the_next_batch_is_asked_about_and_sealed_while_one_is_on_its_way(
    shared_server: ServerHandle, tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    keys = SiteKeys.derive("pipe-overlap", new_data_key())
    real = agent_link(shared_server, tmp_path, "pipe-overlap", loop)
    # the first PutChunks waits at the gate until batch 2 has been asked about
    gated = GatedLink(real, loop, hold=1, asked_while_held=2, opens=2)
    uploader = uploader_over(gated, loop, keys)
    chunks = [plain(keys) for _ in range(6)]
    for chunk in chunks:  # each chunk is a batch of its own
        uploader.add(chunk)
    uploader.flush()

    # (call, its number, batches handed over at that moment)
    assert gated.events[:5] == [
        ("missing", 1, 0),
        ("held", 1, 1),
        ("missing", 2, 1),  # asked while batch 1 waits at the gate
        ("put", 1, 1),  # batch 2 is sealed meanwhile, and waits for room
        ("stored", 1, 1),
    ]
    assert IN_FLIGHT == 1
    puts = [n for what, n, _ in gated.events if what in ("put", "stored")]
    assert puts == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]  # one at a time, in order
    # at most one batch handed over and unconfirmed: the one being stored
    assert [(n, seen) for what, n, seen in gated.events if what == "stored"] == [
        (n, n) for n in range(1, 7)
    ]
    assert [n for what, n, _ in gated.events if what == "missing"] == [1, 2, 3, 4, 5, 6]
    assert uploader.stored() == uploader.batches == 6
    assert uploader.tally.chunks_sent == 6
    assert missing(real, loop, chunks) == set()


def test_a_batch_that_fails_in_flight_surfaces_as_the_server_said_and_ends_the_upload(
    shared_server: ServerHandle, tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    keys = SiteKeys.derive("pipe-fail", new_data_key())
    real = agent_link(shared_server, tmp_path, "pipe-fail", loop)
    # batch 1 goes with a wrong SHA-256 once batch 2 has been asked about
    gated = GatedLink(real, loop, hold=1, spoil=1, asked_while_held=2, opens=2)
    uploader = uploader_over(gated, loop, keys)
    chunks = [plain(keys) for _ in range(4)]
    uploader.add(chunks[0])
    uploader.add(chunks[1])  # batch 1 goes
    assert uploader.batches == 1
    with pytest.raises(InvalidArgument) as failed:
        uploader.add(chunks[2])  # batch 2 is asked about, sealed, and finds batch 1 failed
    # the same error the transport raises for that chunk sent on its own, after
    assert gated.spoiled is not None
    with pytest.raises(StoreSafeError) as direct:
        on(loop, real.put_chunks([gated.spoiled]))
    assert type(failed.value) is type(direct.value)
    assert failed.value.message == direct.value.message
    assert gated.puts == 1 and gated.asked == 2  # batch 2 never went
    assert uploader.batches == 1 and uploader.stored() == 0
    assert uploader.tally.chunks_sent == 0
    assert missing(real, loop, chunks[:2]) == {c.chunk_id for c in chunks[:2]}

    uploader.add(chunks[3])
    with pytest.raises(InvalidArgument):  # the upload is over: the same error again
        uploader.send()
    assert gated.asked == 2  # without asking the server anything


def test_a_stop_waits_for_the_batch_in_flight(
    shared_server: ServerHandle, tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    keys = SiteKeys.derive("pipe-stop", new_data_key())
    real = agent_link(shared_server, tmp_path, "pipe-stop", loop)
    gated = GatedLink(real, loop, hold=1)  # held until the stop is seen
    reason = "the upload window (test) closed"

    def should_stop() -> str:
        if gated.asked == 0:  # batch 1 may go
            return ""
        gated.open_threadsafe()  # batch 1 is held: only now may it go on
        return reason

    uploader = uploader_over(gated, loop, keys, should_stop=should_stop)
    first, second = plain(keys), plain(keys)
    uploader.add(first)
    with pytest.raises(UploadStopped) as stopped:
        uploader.add(second)  # batch 1 goes; its stop check is asked before batch 2
        uploader.flush()
    assert stopped.value.reason == reason
    # raised once batch 1 was stored, not while it was held
    assert ("stored", 1, 1) in gated.events and uploader.stored() == 1
    assert gated.asked == 1 and uploader.tally.chunks_sent == 1
    assert missing(real, loop, [first, second]) == {second.chunk_id}


def test_an_image_pass_whose_batch_fails_in_flight_keeps_no_row_of_it_and_reports_none_stored(
    server: ServerHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.images.uploader.SEND_AFTER_FILE", 128 << 10)  # a batch a file
    site = "pipe-pass"
    folder = tmp_path / "Images"
    folder.mkdir()
    for n in range(3):  # 300 KB each: each file's batch goes as the file ends
        (folder / f"scan-{n}.tif").write_bytes(os.urandom(300_000 + n))
    make = image_sync_for(server, StateDir(tmp_path / "agent"), site, folder)
    gates: list[GatedLink] = []

    def gate(link: StoreLink) -> StoreLink:  # scan-1's batch is held until scan-2's is
        # asked about; then the server stops and the held batch goes on, and fails
        gates.append(GatedLink(link, hold=2, asked_while_held=3, opens=3, on_open=server.stop))
        return gates[-1]

    failed = asyncio.run(make(gate).sync("local"))
    assert failed is not None and failed.outcome is Outcome.FAILED
    assert "cannot reach" in failed.error_message or "did not answer" in failed.error_message
    d = failed.details
    assert isinstance(d, ImageSyncDetails)
    assert d.files_copied == 0  # their rows were rolled back: none counts as stored
    assert d.snapshot_id == ""
    assert [e[:2] for e in gates[0].events if e[0] in ("put", "stored")] == [
        ("put", 1),
        ("stored", 1),
        ("put", 2),  # failed: the server had stopped; batch 3 behind it never went
    ]

    server.start()
    arrived = stored_chunks(server, site)
    assert arrived  # scan-0's batch
    links: list[CutBeforePut] = []

    def record(link: StoreLink) -> StoreLink:
        links.append(CutBeforePut(link, before_put=0, cut=lambda: None))
        return links[-1]

    done = asyncio.run(make(record).sync("local"))
    assert done is not None and done.outcome is Outcome.SUCCEEDED, done.error_message
    assert isinstance(done.details, ImageSyncDetails) and done.details.files_copied == 3
    assert not set(links[0].delivered) & arrived  # nothing that arrived went twice
    assert done.details.snapshot_id
