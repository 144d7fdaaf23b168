"""Stand-ins for the image scanner's tests: a recording consumer, and the faults that cannot
be made for real here (Windows' CreateFileW, files unreadable for root, a failing disk).

- `RecordingConsumer`: stores what it reads in memory under its sha256 and
  returns that as the content id; hooks run after each block (to change the
  file mid-read) and it can be told to fail.
- `FakeWin32`: the Win32 calls of agent.images.winfile over real POSIX files,
  with scripted last-error codes per path (sharing violation, access denied...).
- `FaultyFileAccess`: the real POSIX FileAccess with scripted faults: an error
  at open, an error after N blocks of reading, a hook just before opening (to
  remove or replace the file between listing and reading), file ids spelled
  otherwise by the handle than by the name (as Windows' fstat and lstat may be);
  it counts opens.
- `FaultyLister`: the real folder listing, failing for chosen folders.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Sequence

from agent.images.consumer import FileToStore
from agent.images.errors import skip_for_os_error
from agent.images.fileaccess import OpenedFile, PosixFileAccess
from agent.images.identity import FileState
from agent.images.stream import FileStream
from agent.images.walk import Listing, list_folder
from common.errors import StoreSafeError


@dataclasses.dataclass
class RecordingConsumer:
    """Reads every stream to its end and keeps the bytes, by sha256."""

    blobs: dict[str, bytes] = dataclasses.field(default_factory=dict)
    stored: list[str] = dataclasses.field(default_factory=list)  # paths, in order
    discarded: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    items: list[FileToStore] = dataclasses.field(default_factory=list)
    after_block: Callable[[FileToStore, int], None] | None = None
    fail_on: dict[str, StoreSafeError] = dataclasses.field(default_factory=dict)
    swallow_stream_errors: bool = False
    stop_after_bytes: int | None = None
    keep: bool = True

    def store(self, file: FileToStore, stream: FileStream) -> Sequence[str]:
        self.items.append(file)
        if file.path in self.fail_on:
            raise self.fail_on[file.path]
        digest = hashlib.sha256()
        data = bytearray()
        count = 0
        try:
            for block in stream:
                digest.update(block)
                if self.keep:
                    data += block
                count += 1
                if self.after_block is not None:
                    self.after_block(file, count)
                if self.stop_after_bytes is not None and len(data) >= self.stop_after_bytes:
                    break
        except StoreSafeError:
            if not self.swallow_stream_errors:
                raise
        content_id = digest.hexdigest()
        if self.keep:
            self.blobs[content_id] = bytes(data)
        self.stored.append(file.path)
        return [content_id]

    def discard(self, file: FileToStore, reason: str) -> None:
        self.discarded.append((file.path, reason))


@dataclasses.dataclass
class FakeWin32:
    """The Win32Api over real files: CreateFileW is os.open, handles are descriptors."""

    errors: dict[str, int] = dataclasses.field(default_factory=dict)  # path -> last error
    osfhandle_error: OSError | None = None
    calls: list[tuple[str, int, int, int, int]] = dataclasses.field(default_factory=list)
    closed_handles: list[int] = dataclasses.field(default_factory=list)
    _last_error: int = 0

    def create_file(
        self, path: str, access: int, share: int, disposition: int, flags: int
    ) -> int | None:
        self.calls.append((path, access, share, disposition, flags))
        if path in self.errors:
            self._last_error = self.errors[path]
            return None
        try:
            return os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            self._last_error = 2
            return None

    def last_error(self) -> int:
        return self._last_error

    def open_osfhandle(self, handle: int, flags: int) -> int:
        if self.osfhandle_error is not None:
            raise self.osfhandle_error
        return handle

    def close_handle(self, handle: int) -> None:
        self.closed_handles.append(handle)
        os.close(handle)


class _OtherIdSpelling:
    """An OpenedFile whose handle reports the file id spelled otherwise than lstat does."""

    def __init__(self, inner: OpenedFile) -> None:
        self._inner = inner

    def read(self, size: int) -> bytes:
        return self._inner.read(size)

    def state(self) -> FileState:
        state = self._inner.state()
        return state._replace(file_id="handle:" + state.file_id)

    def close(self) -> None:
        self._inner.close()


class _FailingRead:
    """An OpenedFile whose reads fail with `error` after `blocks` good reads."""

    def __init__(self, inner: OpenedFile, path: str, blocks: int, error: OSError) -> None:
        self._inner, self._path, self._left, self._error = inner, path, blocks, error

    def read(self, size: int) -> bytes:
        if self._left == 0:
            raise skip_for_os_error(self._error, self._path)
        self._left -= 1
        return self._inner.read(size)

    def state(self) -> FileState:
        return self._inner.state()

    def close(self) -> None:
        self._inner.close()


@dataclasses.dataclass
class FaultyFileAccess:
    """PosixFileAccess with scripted faults, keyed by the file's name (last component)."""

    open_errors: dict[str, OSError] = dataclasses.field(default_factory=dict)
    read_errors: dict[str, tuple[int, OSError]] = dataclasses.field(default_factory=dict)
    before_open: Callable[[str], None] | None = None
    other_id_spelling: bool = False
    opened: list[str] = dataclasses.field(default_factory=list)

    def open(self, path: str) -> OpenedFile:
        name = os.path.basename(path)
        if self.before_open is not None:
            self.before_open(path)
        if name in self.open_errors:
            raise skip_for_os_error(self.open_errors[name], path)
        opened = PosixFileAccess().open(path)
        self.opened.append(name)
        if name in self.read_errors:
            blocks, error = self.read_errors[name]
            return _FailingRead(opened, path, blocks, error)
        return _OtherIdSpelling(opened) if self.other_id_spelling else opened


@dataclasses.dataclass
class FaultyLister:
    """The real folder listing, raising `errors[name]` for folders with that name."""

    errors: dict[str, OSError] = dataclasses.field(default_factory=dict)

    def __call__(self, path: str) -> Listing:
        name = os.path.basename(path)
        if name in self.errors:
            raise self.errors[name]
        return list_folder(path)
