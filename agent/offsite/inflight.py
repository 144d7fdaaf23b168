"""The PutChunks batches in flight: the one place the upload runs concurrently.

The uploader hands each sealed batch to `SendWindow.send` and goes back to
reading, cutting and sealing the next one (and asking MissingChunks about it)
while the server receives and stores this one. At most `depth` (IN_FLIGHT:
two) batches are on the wire at once, each on a PutChunks stream of its own
from a sender thread of its own, so the server stores one while the next
arrives instead of waiting for it; `send` waits for either to end when both
are. So memory holds at most `depth` sealed batches plus the one being
prepared (3 x 6 MiB), whatever the data size.

Batches are numbered as they are handed over (an empty one too: every chunk
was on the server already). `stored` is the highest number up to which every
batch is confirmed stored: what was added to a batch numbered at most `stored`
is on the server, and only that may be committed.

A batch that fails ends the window: its error (the store's typed error,
exactly as the call raised it) is raised by the next `check`, `send` or
`wait`, once nothing is in flight any more (a batch queued behind it and not
started is not sent; one already on the wire beside it may land, and counts as
sent but not as stored), so `stored` is final when the error surfaces. `settle`
waits the same way without raising, for a caller that is ending anyway.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
from collections.abc import Callable, Sequence

from agent.domain.offsite import ChunkUpload, PutChunksResult

IN_FLIGHT = 2
"""Batches handed over and not yet confirmed, each on a stream of its own."""

Put = Callable[[Sequence[ChunkUpload]], PutChunksResult]


@dataclasses.dataclass(frozen=True)
class _Flight:
    number: int
    chunks: int
    size: int
    outcome: concurrent.futures.Future[PutChunksResult]


class SendWindow:
    """Sealed batches sent in order by one sender thread; at most `depth` unconfirmed."""

    def __init__(
        self,
        put: Put,
        *,
        depth: int = IN_FLIGHT,
        landed: Callable[[int, int], None] = lambda chunks, size: None,
    ) -> None:
        """`put` sends one batch (blocking); `landed(chunks, bytes)` counts each batch
        confirmed stored, in the caller's thread."""
        self._put = put
        self._landed = landed
        self.depth = depth
        self.sent = 0  # batches handed over
        self.stored = 0  # every batch numbered up to this is confirmed stored
        self.failure: Exception | None = None
        self._flights: collections.deque[_Flight] = collections.deque()
        self._sender: concurrent.futures.ThreadPoolExecutor | None = None

    def send(self, batch: Sequence[ChunkUpload]) -> int:
        """Hand `batch` over (waiting for room first); its number."""
        self.check()
        while len(on_wire := [f.outcome for f in self._flights if not f.outcome.done()]) >= (
            self.depth
        ):
            concurrent.futures.wait(on_wire, return_when=concurrent.futures.FIRST_COMPLETED)
            self.check()
        self.sent += 1
        outcome: concurrent.futures.Future[PutChunksResult]
        if batch:
            if self._sender is None:
                self._sender = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.depth, thread_name_prefix="upload-send"
                )
            outcome = self._sender.submit(self._put, batch)
        else:
            outcome = concurrent.futures.Future()
            outcome.set_result(PutChunksResult(0, 0, 0))
        size = sum(len(c.data) for c in batch)
        self._flights.append(_Flight(self.sent, len(batch), size, outcome))
        return self.sent

    def poll(self) -> int:
        """Count the batches that ended, without waiting; `stored`."""
        while self._flights and self._flights[0].outcome.done():
            self._land(self._flights[0])
        return self.stored

    def check(self) -> None:
        """Raise the error of a batch that failed (after the others in flight ended)."""
        self.poll()
        if self.failure is not None:
            self.settle()
            raise self.failure

    def wait(self) -> None:
        """Wait until every batch handed over is stored; raise the first failure."""
        self.settle()
        if self.failure is not None:
            raise self.failure

    def settle(self) -> Exception | None:
        """Wait until nothing is in flight (queued batches behind a failure are not sent);
        the failure, if any, not raised."""
        while self._flights:
            self._land(self._flights[0])
        if self._sender is not None:  # idle: no thread outlives a drained window
            self._sender.shutdown(wait=True)
            self._sender = None
        return self.failure

    def _land(self, flight: _Flight) -> None:
        """Wait for the oldest batch to end and count it."""
        assert self._flights[0] is flight
        if self.failure is not None:
            flight.outcome.cancel()  # not started yet: it stays unsent
        try:
            flight.outcome.result()
        except concurrent.futures.CancelledError:
            pass
        except Exception as exc:  # noqa: BLE001 - kept, raised by check and wait
            if self.failure is None:
                self.failure = exc
        else:
            self._landed(flight.chunks, flight.size)
            if self.failure is None:
                self.stored = flight.number  # the oldest first: every batch before it too
        self._flights.popleft()
