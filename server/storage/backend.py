"""The contract every storage backend keeps: synchronous, create-only, over validated names.

Backends are small and blocking (restic's backend interface is the model); `BlobStore`
validates names and digests, compares on conflicts and runs these calls in a bounded
thread pool so the server's event loop never waits on a disk or a socket.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
from collections.abc import Iterator, Sequence


@dataclasses.dataclass(frozen=True)
class BlobInfo:
    """A stored blob: its name, size in bytes and (where listing tells) when it was written."""

    key: str
    size: int
    modified: dt.datetime | None = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(frozen=True)
class StoreUsage:
    """Space figures, where the backend knows them (None where it does not)."""

    free_bytes: int | None
    total_bytes: int | None


class Backend(abc.ABC):
    """Blocking operations on one store. Names reaching a backend are already valid keys.

    Every method MUST raise only common.errors types: NotFound for a missing blob,
    StoreFull when there is no room, StoreUnavailable for anything else the store
    cannot do; a backend MUST be safe to call from several threads at once.
    """

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the blobs live, for messages and logs (a path or an s3:// URL; no secrets)."""

    @abc.abstractmethod
    def check(self) -> None:
        """Make sure the store can be used (exists, reachable); StoreUnavailable if not."""

    @abc.abstractmethod
    def create(self, key: str, data: bytes) -> bool:
        """Store `data` as `key` unless the name exists; True if this call created it.

        MUST be atomic: a reader sees all of `data` or no blob. MUST never replace an
        existing blob, even when two callers create one name at the same time (exactly
        one of them gets True). When it fails, no blob of that name becomes visible.
        """

    def create_many(self, blobs: Sequence[tuple[str, bytes]]) -> list[bool]:
        """`create` for each (distinct) name in order; True where this call created it.

        Each blob keeps `create`'s promises. When it fails (the error of the first blob
        that failed), any of the blobs may or may not exist; each is whole or absent. A
        backend that can make a batch durable at a cost per batch overrides this loop.
        """
        return [self.create(key, data) for key, data in blobs]

    @abc.abstractmethod
    def read(self, key: str) -> bytes:
        """The whole blob; NotFound if there is none."""

    def read_many(self, keys: Sequence[str]) -> list[bytes]:
        """The blobs in order (a restore reads thousands of small ones); NotFound for the
        first that is absent. A backend overrides it where one call per blob costs."""
        return [self.read(key) for key in keys]

    @abc.abstractmethod
    def stat(self, keys: Sequence[str]) -> dict[str, BlobInfo | None]:
        """For each name, its info or None when absent."""

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[BlobInfo]:
        """Every blob whose name starts with `prefix`, in no promised order, each once,
        with its modification time (garbage collection leaves young orphans alone)."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the blob; removing one that is absent is not an error (GC may retry)."""

    @abc.abstractmethod
    def usage(self) -> StoreUsage:
        """Free and total space, as far as the backend knows them."""

    def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release connections and files."""
