"""The image-sync Consumer: each file cut with the IMAGES profile and sent by the off-site uploader.

Its content ids are `<chunk id>:<length>`, which is what a manifest entry needs.
The batching, the MissingChunks questions and the sending are
agent.offsite.uploader's.

Batches span files: `store` may return while the last chunks of a file (and of
the small files before it) still wait in the batch, which goes out when it is
full, at the end of a file of SEND_AFTER_FILE bytes or more, or when the
image index wants everything written (`confirm_all`). A batch that goes out is
sent while the next files are read (agent.offsite.inflight), so a file handed
back is owed until the batch holding its last chunk is confirmed: the index
holds its row until then (this uploader is the index's `Confirmations`), and
only records files once their chunks are on the server, without waiting for
the upload at each of its commits. A failed send means the rows still held are
dropped (those files are read again next pass; their chunks that did arrive
are not sent again) and the pass ends: the next `store` raises the failure,
or, when the walk has no file left to store, `failure` tells run_sync.

The uploader's stop check (the pass's time budget is spent, the upload window
closed) is asked before each file and each batch; a stop there is a PassCut
for the scanner, at a batch boundary, once the batches in flight have landed,
so what was sent stays sent and nothing is half stored.
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.images.consumer import FileToStore, PassCut
from agent.images.index import ImageIndex
from agent.images.stream import FileStream
from agent.offsite.uploader import BATCH_BYTES, Uploader, UploadStopped, content_id
from common.errors import StoreSafeError
from common.vault import IMAGES, cut_bytes, cut_stream


class _Readable:
    """A FileStream as pyfastcdc reads it (readinto)."""

    def __init__(self, stream: FileStream) -> None:
        self._stream = stream

    def readinto(self, buffer: memoryview, /) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


WHOLE_FILE_BYTES = IMAGES.max_size
"""A file of at most one chunk's largest size (4 MiB) is read whole and cut in memory (the
same cuts): cutting it as a stream allocated and zeroed a read buffer of twice that for
every file. Reading, cutting, sealing and hashing 4,000 scans of 20-40 KiB took 0.85 s of
CPU as streams and 0.33 s whole; 4,000 of 20 KiB-32 MiB (1.2 GB) 3.1-3.3 s and 2.35 s."""

SEND_AFTER_FILE = BATCH_BYTES
"""A file of a full batch (6 MiB) or more is sent when it ends (with the small files
before it in its batch): a stop never rolls back a large file, which would cost reading
it again. Smaller files share a batch until it is full or the pass ends, so a stop
costs reading at most one batch of them again, and the server gets full batches:
closing them at 128 KiB made a batch a file for most scans, and the server's and the
agent's work per batch was half their CPU in a first sync (bench/README.md)."""


class ImageUploader:
    """Stores each file's chunks in the off-site store (a scanner Consumer)."""

    def __init__(self, uploader: Uploader, index: ImageIndex | None = None) -> None:
        """With the pass's `index`, batches span files (the index holds each file's row
        until its chunks are confirmed, until `close`); without, each file is sent before
        `store` returns."""
        self.uploader = uploader
        self.tally = uploader.tally
        self.failure: StoreSafeError | None = None  # a send failed: the pass ends
        self._owed_through = 0  # the batch holding the last chunk of a file handed back
        self._index = index
        self._send_after = min(SEND_AFTER_FILE, uploader.batch_bytes)
        if index is not None:
            index.confirmations = self

    def close(self) -> None:
        """Stop asking the index (the pass is over) and wait for what is still in flight."""
        if self._index is not None:
            self._index.confirmations = None
        self._settle()

    def store(self, file: FileToStore, stream: FileStream) -> Sequence[str]:
        ids: list[str] = []
        keys = self.uploader.keys
        before = (self.uploader.batches, self.uploader.pending_chunks)
        try:
            if self.failure is not None:
                raise self.failure
            self.uploader.check_stop()
            size = 0
            if file.state.size <= WHOLE_FILE_BYTES:
                chunks = cut_bytes(keys, stream.read_all(), IMAGES)  # to its checked end
            else:
                chunks = cut_stream(keys, _Readable(stream), IMAGES)
            for chunk in chunks:
                ids.append(content_id(chunk.chunk_id, len(chunk.data)))
                self.uploader.add(chunk)
                size += len(chunk.data)
            if self._index is None:
                self.uploader.flush()
            elif size >= self._send_after:
                self.uploader.send()  # on its way; the index waits for it before committing
        except UploadStopped as stopped:
            self._failed(stopped)
            raise PassCut(stopped.reason) from None
        except StoreSafeError as exc:
            self._failed(exc)
            raise
        except BaseException:  # this file's read failed: the chunks of earlier files stay
            batches, queued = before
            self.uploader.drop_pending(keep=queued if self.uploader.batches == batches else 0)
            raise
        self._owed_through = self.uploader.ticket()
        return ids

    def discard(self, file: FileToStore, reason: str) -> None:
        self.tally.files_discarded += 1

    # -- the image index's Confirmations ----------------------------------------------

    def ticket(self) -> int:
        """The batch holding the last chunk of the file handed back last."""
        return self._owed_through

    def confirmed(self) -> int:
        """Every batch up to this is confirmed stored (does not wait)."""
        return self.uploader.stored()

    def confirm_all(self) -> int:
        """Send what waits and wait for it (a failure ends the pass); `confirmed` then."""
        if self.uploader.stored() < self._owed_through and self.failure is None:
            try:
                self.uploader.flush()
            except StoreSafeError as exc:
                self._failed(exc)
        return self.uploader.stored()

    def _failed(self, error: StoreSafeError) -> None:
        """A send failed or the pass stops: drop what waits, let what is in flight land;
        the pass ends."""
        if self.failure is None:
            self.failure = error
        self._settle()

    def _settle(self) -> None:
        late = self.uploader.settle()
        if self.failure is None and isinstance(late, StoreSafeError):
            self.failure = late
