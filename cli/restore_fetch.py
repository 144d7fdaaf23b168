"""Fetching a restore's chunks in batches, opening and checking each, with a bounded cache.

A batch is at most `BATCH_BYTES` of plaintext, fetched in up to `FETCHERS`
concurrent calls of at most 1,000 distinct ids each (the server's limit), so
memory holds two batches and the cache, never a file, and the calls end within
the CLI's deadline on a slow link. While the caller writes one batch, the next
is fetched and opened in the background (`load(ids, ahead=...)`), so receiving,
opening and writing overlap on both cores: gRPC's receiving, file writes, and the
AEAD (cryptography 51), zstd, BLAKE3 and sha256 calls let go of the GIL, though
for a 5 KiB chunk those calls last microseconds and the Python around them holds
it. Each chunk is opened with the site's keys (`open_chunk` checks its seal and
its keyed id) in the thread that received it; a chunk that fails,
or that the store does not hold, is remembered with its one sentence and never
asked for again. A chunk used again later in the restore stays in a
least-recently-used cache of `CACHE_BYTES`; one that falls out of it is fetched
again when needed.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from common.errors import NotFound
from common.vault.chunks import open_chunk
from common.vault.errors import VaultError
from common.vault.sitekeys import SiteKeys

BATCH_IDS = 1000
BATCH_BYTES = 8 * 1024 * 1024  # one call must end within the CLI's --timeout (30 s default)
CACHE_BYTES = 32 * 1024 * 1024
# Concurrent FetchChunks calls for one batch: calls side by side keep the server's store
# reads and the link busy, and open chunks in as many threads; the batch's bytes are
# shared among them, so each still ends within the deadline.
FETCHERS = 4


class ChunkSource(Protocol):
    """Where sealed chunks come from (the admin client's FetchChunks)."""

    def fetch_chunks(self, site: str, ids: Sequence[str]) -> Iterator[tuple[str, bytes]]: ...


# One fetch's outcome: plaintext by id, why each bad one is bad, sealed bytes received.
Found = tuple[dict[str, bytes], dict[str, str], int]


class Chunks:
    """The plaintext of a site's chunks, fetched in batches and checked; `close()` when done."""

    def __init__(self, source: ChunkSource, keys: SiteKeys, uses: Counter[str]) -> None:
        self._source = source
        self._keys = keys
        self._uses = uses  # how many more times each id will be read
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cached = 0
        self._batch: dict[str, bytes] = {}
        self._ahead: Future[Found] | None = None
        self._background = ThreadPoolExecutor(1, thread_name_prefix="fetch-ahead")
        self.bad: dict[str, str] = {}  # chunk id -> why it cannot be used
        self.fetched = 0

    def has(self, chunk_id: str) -> bool:
        """Whether `chunk_id` is at hand without a call (or known to be bad)."""
        return chunk_id in self._cache or chunk_id in self.bad

    def load(self, ids: Iterable[str], ahead: Iterable[str] = ()) -> None:
        """Make the batch `ids` (distinct, in order of use) the one at hand, replacing the
        previous batch (what was fetched ahead is used, the rest fetched now), then start
        fetching the batch `ahead` in the background."""
        self._batch = {}
        batch = self._collect(self._ahead) if self._ahead is not None else {}
        self._ahead = None
        batch.update(self._fetch([i for i in dict.fromkeys(ids) if not self._known(i, batch)]))
        self._batch = batch
        later = [i for i in dict.fromkeys(ahead) if not self._known(i, batch)]
        if later:
            self._ahead = self._background.submit(self._fetch_all, later)

    def close(self) -> None:
        """Wait for a fetch ahead to end (its outcome is not wanted) and stop its thread."""
        if self._ahead is not None:
            self._ahead.cancel()
        self._background.shutdown(wait=True)
        self._ahead = None

    def _known(self, chunk_id: str, batch: dict[str, bytes]) -> bool:
        return chunk_id in batch or self.has(chunk_id)

    def _collect(self, found: Future[Found]) -> dict[str, bytes]:
        return self._note(*found.result())

    def _note(self, plain: dict[str, bytes], bad: dict[str, str], fetched: int) -> dict[str, bytes]:
        self.bad.update(bad)
        self.fetched += fetched
        return plain

    def take(self, chunk_id: str, length: int) -> bytes | None:
        """The plaintext of `chunk_id` for its next use, or None when it is bad."""
        plain = self._batch.get(chunk_id)
        if plain is None and chunk_id in self._cache:
            self._cache.move_to_end(chunk_id)
            plain = self._cache[chunk_id]
        if plain is None and chunk_id not in self.bad:
            plain = self._fetch([chunk_id]).get(chunk_id)  # fell out of the cache
        if plain is not None and len(plain) != length:
            self.bad[chunk_id] = (
                f"chunk {chunk_id} holds {len(plain)} bytes where the manifest says {length}"
            )
            plain = None
        self._uses[chunk_id] -= 1
        if plain is not None and self._uses[chunk_id] > 0:
            self._keep(chunk_id, plain)
        return plain

    def _keep(self, chunk_id: str, plain: bytes) -> None:
        if chunk_id in self._cache or len(plain) > CACHE_BYTES:
            return
        self._cache[chunk_id] = plain
        self._cached += len(plain)
        while self._cached > CACHE_BYTES:
            _, dropped = self._cache.popitem(last=False)
            self._cached -= len(dropped)

    def _fetch(self, ids: list[str]) -> dict[str, bytes]:
        """Fetch `ids` now (see `_fetch_all`), noting the bad ones and the bytes."""
        return self._note(*self._fetch_all(ids))

    def _fetch_all(self, ids: list[str]) -> Found:
        """Fetch `ids` in up to `FETCHERS` concurrent calls of at most `BATCH_IDS` each."""
        if not ids:
            return {}, {}, 0
        calls = min(FETCHERS, len(ids))
        step = -(-len(ids) // calls)
        slices = [ids[at : at + step] for at in range(0, len(ids), step)]
        if len(slices) == 1:
            found = [self._fetch_slice(slices[0])]
        else:
            with ThreadPoolExecutor(len(slices), thread_name_prefix="fetch") as pool:
                found = list(pool.map(self._fetch_slice, slices))
        got: dict[str, bytes] = {}
        bad: dict[str, str] = {}
        for plain, slice_bad, _ in found:
            got.update(plain)
            bad.update(slice_bad)
        return got, bad, sum(n for _, _, n in found)

    def _fetch_slice(self, ids: list[str]) -> Found:
        """(plaintext by id, why each bad one is bad, sealed bytes received) of one call;
        a missing chunk (NotFound names it) is marked and the call made again for the rest."""
        got: dict[str, bytes] = {}
        bad: dict[str, str] = {}
        fetched = 0
        pending = ids
        while pending:
            asked = set(pending)
            seen: set[str] = set()
            try:
                for chunk_id, blob in self._source.fetch_chunks(self._keys.site, pending):
                    if chunk_id not in asked or chunk_id in seen:
                        continue  # not asked for: never trusted, never used
                    seen.add(chunk_id)
                    fetched += len(blob)
                    try:
                        got[chunk_id] = open_chunk(self._keys, chunk_id, blob)
                    except VaultError as err:
                        bad[chunk_id] = err.message
            except NotFound as err:
                named = [i for i in pending if i not in seen and i in err.message]
                if not named:
                    raise
                bad[named[0]] = f"chunk {named[0]} is missing from the store"
                pending = [i for i in pending if i not in seen and i not in bad]
                continue
            if not seen:
                break  # the stream ended early, for no reason: the rest are named below
            pending = [i for i in pending if i not in seen and i not in bad]
        for chunk_id in ids:
            if chunk_id not in got and chunk_id not in bad:
                bad[chunk_id] = f"chunk {chunk_id} was not sent by the server"
        return got, bad, fetched


def batch_end(chunks: Chunks, refs: Sequence[tuple[int, str, int]], start: int) -> int:
    """Where the batch of `refs` (item, chunk id, length) starting at `start` ends: at most
    `FETCHERS` x `BATCH_IDS` ids and `BATCH_BYTES` not yet at hand (a larger chunk alone)."""
    ids: set[str] = set()
    size = 0
    end = start
    while end < len(refs):
        _, cid, length = refs[end]
        if cid not in ids and not chunks.has(cid):
            if len(ids) == BATCH_IDS * FETCHERS or (ids and size + length > BATCH_BYTES):
                break
            ids.add(cid)
            size += length
        end += 1
    return end
