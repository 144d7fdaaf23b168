"""The agent's upload pipeline (agent.offsite.inflight) against a real server on loopback.

One PutChunks call is held at a gate on its way (tests.support.offsitestore.GatedLink
around the real transport), and the tests watch what the uploader does meanwhile: it
asks about each batch before it seals the one before, and sends the next batches
beside the held one; a batch that fails in flight surfaces as the server's typed
error, nothing after it is counted stored and nothing more is sent; a stop waits for
the batch in flight and sends the one asked about; an image-sync pass
whose batch fails in flight keeps no row naming a chunk that did not arrive, reports
nothing stored, and the next pass sends nothing twice.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
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


def at(events: list[tuple[str, int, object]], what: str, n: int) -> int:
    """Where (what, n) is in a GatedLink's events."""
    return next(i for i, e in enumerate(events) if e[:2] == (what, n))


def test_batches_are_asked_about_ahead_and_two_are_on_the_wire_at_once(
    shared_server: ServerHandle, tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    keys = SiteKeys.derive("pipe-overlap", new_data_key())
    real = agent_link(shared_server, tmp_path, "pipe-overlap", loop)
    # the first PutChunks waits at the gate until every other batch is stored
    gated = GatedLink(real, loop, hold=1, asked_while_held=2)
    events = gated.events

    def open_when_the_rest_are_stored() -> None:
        deadline = time.monotonic() + 60
        while ("stored", 6) not in [e[:2] for e in events] and time.monotonic() < deadline:
            time.sleep(0.01)
        gated.open_threadsafe()

    opener = threading.Thread(target=open_when_the_rest_are_stored, daemon=True)
    opener.start()
    uploader = uploader_over(gated, loop, keys)
    chunks = [plain(keys) for _ in range(6)]
    for chunk in chunks:  # each chunk is a batch of its own
        uploader.add(chunk)
    uploader.flush()
    opener.join()

    assert IN_FLIGHT == 2
    # batches 2 to 6 went to the server and were stored beside batch 1, held at the gate
    for n in range(2, 7):
        assert at(events, "held", 1) < at(events, "put", n) < at(events, "stored", n)
        assert at(events, "stored", n) < at(events, "stored", 1)
    # each batch was sealed and handed over only once the next was taken and asked about
    # (the value recorded is the batches taken at that moment)
    assert events[at(events, "held", 1)][2] in (2, 3)
    for n in range(2, 6):
        taken = events[at(events, "put", n)][2]
        assert isinstance(taken, int) and taken >= n + 1
    assert [n for what, n, _ in events if what == "missing"] == [1, 2, 3, 4, 5, 6]
    assert uploader.stored() == uploader.batches == 6
    assert uploader.tally.chunks_sent == 6
    assert missing(real, loop, chunks) == set()


def test_a_batch_that_fails_in_flight_surfaces_as_the_server_said_and_ends_the_upload(
    shared_server: ServerHandle, tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    keys = SiteKeys.derive("pipe-fail", new_data_key())
    real = agent_link(shared_server, tmp_path, "pipe-fail", loop)
    # batch 2 goes with a wrong SHA-256 once batch 3 has been asked about
    gated = GatedLink(real, loop, hold=2, spoil=2, asked_while_held=3, opens=3)
    uploader = uploader_over(gated, loop, keys)
    chunks = [plain(keys) for _ in range(4)]
    for chunk in chunks:
        uploader.add(chunk)
    with pytest.raises(InvalidArgument) as failed:
        uploader.flush()
    # the same error the transport raises for that chunk sent on its own, after
    assert gated.spoiled is not None and gated.spoiled.chunk_id == chunks[1].chunk_id
    with pytest.raises(StoreSafeError) as direct:
        on(loop, real.put_chunks([gated.spoiled]))
    assert type(failed.value) is type(direct.value)
    assert failed.value.message == direct.value.message
    assert uploader.stored() == 1  # batch 1; nothing after the failed one counts stored
    # batches 3 and 4 may have gone beside batch 2 before its refusal came back: what
    # landed is counted as sent (and is on the server), not as stored
    lacking = missing(real, loop, chunks)
    assert chunks[0].chunk_id not in lacking and chunks[1].chunk_id in lacking
    assert uploader.tally.chunks_sent == len(chunks) - len(lacking)
    assert gated.puts == 1 + len(chunks) - len(lacking)

    asked = gated.asked
    uploader.add(plain(keys))
    with pytest.raises(InvalidArgument):  # the upload is over: the same error again
        uploader.send()
    assert gated.asked == asked  # without asking the server anything


def test_a_stop_waits_for_the_batch_in_flight(
    shared_server: ServerHandle, tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    keys = SiteKeys.derive("pipe-stop", new_data_key())
    real = agent_link(shared_server, tmp_path, "pipe-stop", loop)
    gated = GatedLink(real, loop, hold=1)  # held until the stop is seen
    reason = "the upload window (test) closed"
    checks = 0

    def should_stop() -> str:
        nonlocal checks
        checks += 1
        if checks < 3:  # batches 1 and 2 may be taken
            return ""
        deadline = time.monotonic() + 60
        while not any(e[:2] == ("held", 1) for e in gated.events):  # batch 1 is on its way
            assert time.monotonic() < deadline
            time.sleep(0.01)
        gated.open_threadsafe()  # only now may it go on
        return reason

    uploader = uploader_over(gated, loop, keys, should_stop=should_stop)
    chunks = [plain(keys) for _ in range(3)]  # a batch each
    with pytest.raises(UploadStopped) as stopped:
        for chunk in chunks:  # batch 1 goes as batch 2 is taken
            uploader.add(chunk)
        uploader.flush()  # the stop check before batch 3
    assert stopped.value.reason == reason
    # raised once batch 1 was stored, not while it was held, and batch 2, taken and asked
    # about already, went too; batch 3, still in the queue, is dropped
    assert ("stored", 1) in [e[:2] for e in gated.events] and uploader.stored() == 2
    uploader.close()
    assert gated.puts == 2 and gated.asked == 2 and uploader.tally.chunks_sent == 2
    assert missing(real, loop, chunks) == {chunks[2].chunk_id}


def test_an_image_pass_whose_batch_fails_in_flight_keeps_only_the_rows_whose_batches_landed(
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
    assert d.files_copied == 1  # scan-0's batch landed: its row stays; the others' dropped
    assert d.snapshot_id == ""
    sent = [e[:2] for e in gates[0].events if e[0] in ("put", "stored")]
    # batch 1 was stored; batch 2 failed: the server had stopped; batch 3 behind it
    # failed too, or never went
    assert ("stored", 1) in sent and ("put", 2) in sent
    assert [e for e in sent if e[0] == "stored"] == [("stored", 1)]

    server.start()
    arrived = stored_chunks(server, site)
    assert arrived  # scan-0's batch
    links: list[CutBeforePut] = []

    def record(link: StoreLink) -> StoreLink:
        links.append(CutBeforePut(link, before_put=0, cut=lambda: None))
        return links[-1]

    done = asyncio.run(make(record).sync("local"))
    assert done is not None and done.outcome is Outcome.SUCCEEDED, done.error_message
    assert isinstance(done.details, ImageSyncDetails) and done.details.files_copied == 2
    assert not set(links[0].delivered) & arrived  # nothing that arrived went twice
    assert done.details.snapshot_id
