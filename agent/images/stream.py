"""A shop file as the consumer reads it: fixed-size blocks, paced, closed and checked at its end.

Memory stays at one block whatever the file size. At the end of the file the
stream asks the open handle again (size, mtime in ns, file id: on Windows the
last-write time comes from the handle) and compares it with what the handle
said when the file was opened, and checks that exactly that many bytes came
out. If anything
differs the file changed while it was read, and the final read raises
`ChangedWhileRead` instead of returning the end: a torn copy never looks
complete. The file is closed as soon as its end is reached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from agent.images.errors import ChangedWhileRead, FileSkipped
from agent.images.fileaccess import OpenedFile
from agent.images.identity import FileState

BLOCK_SIZE = 1 << 20

Pace = Callable[[int], None]
"""Called after each block read with its size; the uploader slows reading down here."""


class FileStream:
    """One file open for the consumer; read it to its end with `read` or by iterating."""

    def __init__(
        self,
        opened: OpenedFile,
        expected: FileState,
        *,
        path: str,
        block_size: int = BLOCK_SIZE,
        pace: Pace | None = None,
    ) -> None:
        self.path = path
        self.expected = expected
        self._opened = opened
        self._block = block_size
        self._pace = pace
        self.bytes_read = 0
        self.bytes_handed = 0
        self.complete = False  # the end was reached and the file had not changed
        self.failure: FileSkipped | None = None  # why the stream stopped short, if it did
        self.closed = False

    def read(self, size: int | None = None) -> bytes:
        """Up to `size` bytes (at most one block; default one block); b'' at the verified end."""
        if size is not None and size < 0:
            raise ValueError("read the image stream in blocks, not all at once")
        if self.complete:
            return b""
        if self.closed:
            raise ValueError(f"{self.path}: the stream is closed")
        want = self._block if size is None else min(size, self._block)
        if want == 0:
            return b""
        data = self._take(want)
        if not data:
            self._check_end()
        return data

    def read_all(self) -> bytes:
        """The whole file to its checked end, in one read where the system allows (a file
        that the listing said is small: no blocks to join, so no copy of them)."""
        if self.complete:
            return b""
        data = self._take(self.expected.size + 1)  # one more: did it grow?
        if len(data) == self.expected.size:
            self._check_end()
            return data
        return b"".join([data, *self])  # a short read: the rest block by block

    def _take(self, size: int) -> bytes:
        """One read of up to `size` bytes, counted, paced, and refused past the size the
        file had when it was opened."""
        if self.closed:
            raise ValueError(f"{self.path}: the stream is closed")
        try:
            data = self._opened.read(size)
        except FileSkipped as exc:
            self._fail(exc)
            raise
        self.bytes_read += len(data)
        if self.bytes_read > self.expected.size:
            raise self._fail(ChangedWhileRead(f"{self.path}: it grew while it was read"))
        self.bytes_handed += len(data)
        if self._pace is not None and data:
            self._pace(len(data))
        return data

    def __iter__(self) -> Iterator[bytes]:
        while block := self.read():
            yield block

    def _check_end(self) -> None:
        try:
            now = self._opened.state()
        except FileSkipped as exc:
            raise self._fail(exc) from exc
        self.close()
        if now != self.expected or self.bytes_read != self.expected.size:
            raise self._fail(ChangedWhileRead(f"{self.path}: it changed while it was read"))
        self.complete = True

    def _fail(self, failure: FileSkipped) -> FileSkipped:
        self.failure = failure
        self.close()
        return failure

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._opened.close()
