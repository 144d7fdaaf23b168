"""The send window (agent.offsite.inflight): batch numbers, the stored prefix, failures.

The put here is a plain function the test holds at a threading.Event; the real
store calls are tested against a real server in tests/integration/agent/test_upload_pipeline.py.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence

import pytest

from agent.domain.offsite import ChunkUpload, PutChunksResult
from agent.offsite.inflight import SendWindow
from common.errors import Unavailable

WAIT = 60.0  # a hang guard only


def upload(data: bytes) -> ChunkUpload:
    digest = hashlib.sha256(data).digest()
    return ChunkUpload(digest.hex(), data, digest)


class HeldPut:
    """Sends nothing: each call waits for `go`, records its batch, and fails when told."""

    def __init__(self, fail_call: int = 0) -> None:
        self.go = threading.Event()
        self.calls: list[int] = []
        self.fail_call = fail_call

    def __call__(self, batch: Sequence[ChunkUpload]) -> PutChunksResult:
        assert self.go.wait(WAIT)
        self.calls.append(len(batch))
        if len(self.calls) == self.fail_call:
            raise Unavailable("cannot reach the server (test)")
        return PutChunksResult(len(batch), 0, sum(len(c.data) for c in batch))


def test_an_empty_batch_is_numbered_and_counts_stored_only_after_the_batches_before_it() -> None:
    put = HeldPut()
    landed: list[tuple[int, int]] = []
    window = SendWindow(put, depth=2, landed=lambda chunks, size: landed.append((chunks, size)))
    assert window.send([upload(b"a" * 10), upload(b"b" * 5)]) == 1
    assert window.send([]) == 2  # every chunk of it was on the server already
    assert window.poll() == 0  # batch 1 is held: the empty batch 2 is not stored before it
    put.go.set()
    window.wait()
    assert window.stored == 2 and landed == [(2, 15), (0, 0)]


def test_a_failed_batch_stops_the_stored_count_before_it_and_is_raised_until_the_end() -> None:
    put = HeldPut(fail_call=2)
    window = SendWindow(put, depth=1)
    window.send([upload(b"a")])
    put.go.set()
    window.send([upload(b"b")])  # batch 1 is stored first: the window holds one
    assert window.stored == 1
    with pytest.raises(Unavailable, match="cannot reach the server"):
        window.send([upload(b"c")])  # batch 2 failed meanwhile
    assert window.stored == 1 and window.sent == 2 and put.calls == [1, 1]
    with pytest.raises(Unavailable):
        window.wait()
    assert isinstance(window.settle(), Unavailable)
