"""`BlobStore`: the async, create-only blob store the server calls, over any `Backend`.

It owns what every backend shares: names are checked, the digest of the bytes received
is computed and compared before anything is written, a name that exists is compared
byte for byte (same bytes: an idempotent retry that succeeds; other bytes: refused, so
agents can only add), and every blocking backend call runs in a bounded thread pool.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import functools
import itertools
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from common.errors import InvalidArgument, NotFound, StoreSafeError
from server.storage.backend import Backend, BlobInfo, StoreUsage
from server.storage.digest import Digest
from server.storage.errors import BlobConflict, BlobTooLarge, DigestMismatch, StoreUnavailable
from server.storage.keys import check_key, check_prefix

# Chunks are under 16 MiB; one blob is always written in one piece (no multipart upload).
MAX_BLOB_BYTES = 32 * 1024 * 1024
MAX_BATCH = 1000
LIST_PAGE = 1000
DEFAULT_WORKERS = 8

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Saved:
    """The outcome of a save: `created` is False when the same bytes were there already."""

    key: str
    size: int
    created: bool


class BlobStore:
    """Create-only named blobs. Safe to share between all tasks of one event loop."""

    def __init__(
        self,
        backend: Backend,
        *,
        workers: int = DEFAULT_WORKERS,
        max_blob_bytes: int = MAX_BLOB_BYTES,
    ) -> None:
        if workers < 1:
            raise InvalidArgument("the blob store needs at least one worker thread")
        self.backend = backend
        self.max_blob_bytes = max_blob_bytes
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="blobstore")

    def describe(self) -> str:
        """Where the blobs live (a path or an s3:// URL)."""
        return self.backend.describe()

    async def check(self) -> None:
        """StoreUnavailable unless the store can be used now (for `serve` at start)."""
        await self._run(self.backend.check)

    async def save(self, key: str, data: bytes, digest: Digest) -> Saved:
        """Store `data` under `key` if it hashes to `digest`; never replaces other bytes.

        DigestMismatch (nothing stored) when the bytes do not match the digest;
        BlobConflict when the name holds other bytes; StoreFull, StoreUnavailable.
        """
        check_key(key)
        self._check_size(key, data)
        return await self._run(self._save, key, bytes(data), digest)

    def _check_size(self, key: str, data: bytes) -> None:
        if len(data) > self.max_blob_bytes:
            raise BlobTooLarge(
                f"blob {key} is {len(data)} bytes; the store takes at most "
                f"{self.max_blob_bytes} bytes in one blob"
            )

    async def save_many(
        self, blobs: Sequence[tuple[str, bytes, Digest]]
    ) -> tuple[builtins.list[Saved], StoreSafeError | None]:
        """Store the blobs (distinct names) as `save` does, made durable together.

        Returns the outcomes of the blobs before the first that fails its own checks
        (DigestMismatch: it and those after it are not written; BlobConflict, or
        StoreUnavailable while another upload writes the name) and that error, or None.
        StoreFull and StoreUnavailable of the store itself are raised: then any of the
        blobs may or may not be stored, each whole or absent.
        """
        for key, data, _ in blobs:
            check_key(key)
            self._check_size(key, data)
        if len(dict.fromkeys(key for key, _, _ in blobs)) != len(blobs):
            raise InvalidArgument("a batch of blobs names each blob once")
        return await self._run(self._save_many, [(k, bytes(d), g) for k, d, g in blobs])

    async def load(self, key: str) -> bytes:
        """The blob's bytes; NotFound if there is none."""
        return await self._run(self.backend.read, check_key(key))

    async def digest(self, key: str, algorithm: str) -> tuple[int, Digest]:
        """The blob's size and the digest of its bytes with `algorithm` (sha256 or blake3),
        read and hashed in a worker thread (a store check never holds the event loop);
        NotFound if there is none."""
        return await self._run(_size_and_digest, self.backend.read, check_key(key), algorithm)

    async def load_many(self, keys: Sequence[str]) -> list[bytes]:
        """The blobs' bytes in order, read in one go off the event loop; NotFound for the
        first that is absent."""
        names = [check_key(key) for key in keys]
        return await self._run(self.backend.read_many, names)

    async def stat(self, keys: Sequence[str]) -> dict[str, BlobInfo | None]:
        """For each of up to 1000 names: its info, or None when it is absent."""
        names = _batch(keys)
        return await self._run(self.backend.stat, names)

    async def missing(self, keys: Sequence[str]) -> list[str]:
        """Those of up to 1000 names that are not stored, in the order given."""
        found = await self.stat(keys)
        return [key for key in dict.fromkeys(keys) if found[key] is None]

    async def list(self, prefix: str = "") -> AsyncIterator[BlobInfo]:
        """Every blob whose name starts with `prefix` (page by page, off the event loop)."""
        blobs = await self._run(self.backend.list, check_prefix(prefix))
        while True:
            page = await self._run(_take, blobs, LIST_PAGE)
            for info in page:
                yield info
            if len(page) < LIST_PAGE:
                return

    async def remove(self, key: str) -> None:
        """Delete a blob (for garbage collection only; agents never reach this)."""
        await self._run(self.backend.delete, check_key(key))

    async def usage(self) -> StoreUsage:
        """Free and total space where the backend knows them."""
        return await self._run(self.backend.usage)

    async def close(self) -> None:
        """Release the backend and stop the worker threads."""
        await self._run(self.backend.close)
        self._pool.shutdown(wait=False)

    def _save(self, key: str, data: bytes, digest: Digest) -> Saved:
        _check_digest(key, data, digest)
        if self.backend.create(key, data):
            return Saved(key, len(data), created=True)
        return self._compare(key, data)

    def _save_many(
        self, blobs: Sequence[tuple[str, bytes, Digest]]
    ) -> tuple[builtins.list[Saved], StoreSafeError | None]:
        error: StoreSafeError | None = None
        for at, (key, data, digest) in enumerate(blobs):
            try:
                _check_digest(key, data, digest)
            except DigestMismatch as mismatch:
                blobs, error = blobs[:at], mismatch
                break
        created = self.backend.create_many([(key, data) for key, data, _ in blobs])
        saved: builtins.list[Saved] = []
        for (key, data, _), new in zip(blobs, created, strict=True):
            try:
                saved.append(Saved(key, len(data), True) if new else self._compare(key, data))
            except (BlobConflict, StoreUnavailable) as failed:
                return saved, failed
        return saved, error

    def _compare(self, key: str, data: bytes) -> Saved:
        """The outcome of a save whose name exists: the same bytes, or BlobConflict."""
        try:
            stored = self.backend.read(key)
        except NotFound:
            raise StoreUnavailable(
                f"blob {key} is being written by another upload right now; try again"
            ) from None
        if stored != data:
            raise BlobConflict(
                f"blob {key} is already stored with other content; stored blobs are never "
                "overwritten"
            )
        return Saved(key, len(data), created=False)

    async def _run(self, call: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(call, *args))


def _check_digest(key: str, data: bytes, digest: Digest) -> None:
    received = Digest.of(data, digest.algorithm)
    if received != digest:
        raise DigestMismatch(
            f"blob {key} arrived with digest {received}, not the stated {digest}; "
            "nothing was stored"
        )


def _size_and_digest(read: Callable[[str], bytes], key: str, algorithm: str) -> tuple[int, Digest]:
    data = read(key)
    return len(data), Digest.of(data, algorithm)


def _batch(keys: Sequence[str]) -> list[str]:
    if isinstance(keys, str):
        raise InvalidArgument("blob names must come as a list, not one string")
    if len(keys) > MAX_BATCH:
        raise InvalidArgument(f"at most {MAX_BATCH} blob names per call, not {len(keys)}")
    return [check_key(key) for key in dict.fromkeys(keys)]


def _take(blobs: Iterator[BlobInfo], count: int) -> list[BlobInfo]:
    return list(itertools.islice(blobs, count))
