"""The image-sync Consumer: each file cut with the IMAGES profile and sent by the off-site uploader.

Its content ids are `<chunk id>:<length>`, which is what a manifest entry needs.
The batching, the MissingChunks questions and the sending are
agent.offsite.uploader's.

Batches span files: `store` may return while the last chunks of a file (and of
the small files before it) still wait in the batch, which goes out when it is
full, at the end of a file of SEND_AFTER_FILE bytes or more, or before the
image index commits (`before_index_commit`, the index's hook): the index only
records a file once its chunks are on the server. A failed send means the
index's rows not yet committed are rolled back (those files are read again next
pass; their chunks that did arrive are not sent again) and the pass ends: the
next `store` raises the failure, or, when the walk has no file left to store,
`failure` tells run_sync.

The uploader's stop check (the pass's time budget is spent, the upload window
closed) is asked before each file and each batch; a stop there is a PassCut
for the scanner, at a batch boundary, so what was sent stays sent and nothing
is half stored.
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.images.consumer import FileToStore, PassCut
from agent.images.index import ImageIndex
from agent.images.stream import FileStream
from agent.offsite.uploader import Uploader, UploadStopped, content_id
from common.errors import StoreSafeError
from common.vault import IMAGES, cut_stream


class _Readable:
    """A FileStream as pyfastcdc reads it (readinto)."""

    def __init__(self, stream: FileStream) -> None:
        self._stream = stream

    def readinto(self, buffer: memoryview, /) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


SEND_AFTER_FILE = 128 << 10
"""A file of this size or more is sent when it ends (with the small files before it in
its batch): a stop or a failed send never rolls back a large file, which would cost
reading it again. Smaller files share a batch until it is full or the index commits."""


class ImageUploader:
    """Stores each file's chunks in the off-site store (a scanner Consumer)."""

    def __init__(self, uploader: Uploader, index: ImageIndex | None = None) -> None:
        """With the pass's `index`, batches span files (it asks before each commit, until
        `close`); without, each file is sent before `store` returns."""
        self.uploader = uploader
        self.tally = uploader.tally
        self.failure: StoreSafeError | None = None  # a send failed: the pass ends
        self._owed_since: int | None = None  # flushes when a stored file's chunks waited
        self._index = index
        self._send_after = min(SEND_AFTER_FILE, uploader.batch_bytes) if index else 0
        if index is not None:
            index.before_commit = self.before_index_commit

    def close(self) -> None:
        """Stop asking the index (the pass is over)."""
        if self._index is not None:
            self._index.before_commit = None

    def store(self, file: FileToStore, stream: FileStream) -> Sequence[str]:
        ids: list[str] = []
        keys = self.uploader.keys
        before = (self.uploader.flushes, self.uploader.pending_chunks)
        try:
            if self.failure is not None:
                raise self.failure
            why = self.uploader.should_stop()
            if why:
                raise UploadStopped(why)
            size = 0
            for chunk in cut_stream(keys, _Readable(stream), IMAGES):
                ids.append(content_id(chunk.chunk_id, len(chunk.data)))
                self.uploader.add(chunk)
                size += len(chunk.data)
            if size >= self._send_after:
                self.uploader.flush()
        except UploadStopped as stopped:
            self._failed(stopped)
            raise PassCut(stopped.reason) from None
        except StoreSafeError as exc:
            self._failed(exc)
            raise
        except BaseException:  # this file's read failed: the chunks of earlier files stay
            flushes, queued = before
            self.uploader.drop_pending(keep=queued if self.uploader.flushes == flushes else 0)
            raise
        if self.uploader.pending_chunks and not self._owed():  # owed from this flush on
            self._owed_since = self.uploader.flushes
        return ids

    def discard(self, file: FileToStore, reason: str) -> None:
        self.tally.files_discarded += 1

    def before_index_commit(self) -> bool:
        """The image index's hook: send what waits; False (roll back) when the rows not yet
        committed name chunks that did not reach the server."""
        if self._owed() and self.failure is None:
            try:
                self.uploader.flush()
            except StoreSafeError as exc:
                self._failed(exc)
        return not self._owed()

    def _owed(self) -> bool:
        """Whether a file handed back to the scanner has chunks that are not on the server."""
        if self._owed_since is not None and self.uploader.flushes > self._owed_since:
            self._owed_since = None  # a flush since sent everything queued before it
        return self._owed_since is not None

    def _failed(self, error: StoreSafeError) -> None:
        """A send failed or the pass stops: drop what waits; the pass ends."""
        self._owed()
        self.uploader.drop_pending()
        if self.failure is None:
            self.failure = error
