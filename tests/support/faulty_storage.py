"""A storage backend wrapper that fails chosen operations on cue (kopia's FaultyStorage).

It stands in for what cannot be made to happen on demand here: a store that fills up
or drops off the network between two calls. Everything it does not fail is passed to
the real backend underneath.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator, Sequence

from server.storage.backend import Backend, BlobInfo, StoreUsage


class FaultyBackend(Backend):
    """Wraps `inner`; `fail(op, error, times)` makes the next `times` calls of `op` raise."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.calls: collections.Counter[str] = collections.Counter()
        self._faults: dict[str, collections.deque[Exception | None]] = collections.defaultdict(
            collections.deque
        )
        self._gates: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def fail(self, op: str, error: Exception, times: int = 1, *, after: int = 0) -> None:
        """Queue `error` for the next `times` calls of `op` ("create", "read", ...), once
        `after` calls of it have passed."""
        if not hasattr(Backend, op):
            raise ValueError(f"no backend operation {op!r}")
        with self._lock:
            self._faults[op].extend([None] * after + [error] * times)

    def gate(self, op: str) -> threading.Event:
        """Make calls of `op` wait (in their worker thread) until the returned event is set."""
        with self._lock:
            return self._gates.setdefault(op, threading.Event())

    def _enter(self, op: str) -> None:
        with self._lock:
            self.calls[op] += 1
            queue = self._faults[op]
            error = queue.popleft() if queue else None
            gate = self._gates.get(op)
        if gate is not None and not gate.wait(timeout=30):
            raise TimeoutError(f"the gate of {op} was never opened")
        if error is not None:
            raise error

    def describe(self) -> str:
        return f"faulty({self.inner.describe()})"

    def check(self) -> None:
        self._enter("check")
        self.inner.check()

    def create(self, key: str, data: bytes) -> bool:
        self._enter("create")
        return self.inner.create(key, data)

    def read(self, key: str) -> bytes:
        self._enter("read")
        return self.inner.read(key)

    def stat(self, keys: Sequence[str]) -> dict[str, BlobInfo | None]:
        self._enter("stat")
        return self.inner.stat(keys)

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        self._enter("list")
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self._enter("delete")
        self.inner.delete(key)

    def usage(self) -> StoreUsage:
        self._enter("usage")
        return self.inner.usage()

    def close(self) -> None:
        self.inner.close()
