"""Opening a shop file for reading without getting in the shop program's way (the POSIX side).

`FileAccess.open` gives an `OpenedFile` or raises a `FileSkipped` saying
why not (busy, vanished, unreadable, a link, not a regular file). On POSIX a
plain `os.open(O_RDONLY | O_NOFOLLOW | O_NONBLOCK)` takes no lock, so the shop
program can write, rename or delete the file while it is read; O_NOFOLLOW
refuses a name that became a symbolic link and O_NONBLOCK keeps a name that
became a fifo from hanging the pass. The page cache is told the read is
sequential and, once closed, that the pages may go (files of 1 MiB and more),
so a pass over gigabytes of images does not push the shop program's data out
of memory. Windows lives in
`agent.images.winfile`; `default_file_access` picks the one for this system.
"""

from __future__ import annotations

import contextlib
import os
import stat
from typing import Protocol

from agent.images.errors import NotARegularFile, skip_for_os_error
from agent.images.identity import FileState, state_of


class OpenedFile(Protocol):
    """A file open for reading; `state` is read from the open handle, not the name."""

    def read(self, size: int) -> bytes: ...

    def state(self) -> FileState: ...

    def close(self) -> None: ...


class FileAccess(Protocol):
    """Opens files for reading; raises FileSkipped when a file cannot be read now."""

    def open(self, path: str) -> OpenedFile: ...


ADVISE_FROM = 1 << 20  # smaller files are not worth two more system calls each


class FdFile:
    """An OpenedFile over an OS file descriptor (POSIX, or a Windows CRT descriptor)."""

    def __init__(self, fd: int, path: str, *, advise: bool = False) -> None:
        self._fd = fd
        self.path = path
        self.closed = False
        self._advise = advise and hasattr(os, "posix_fadvise")
        if self._advise:
            with contextlib.suppress(OSError):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)

    def read(self, size: int) -> bytes:
        try:
            return os.read(self._fd, size)
        except OSError as exc:
            raise skip_for_os_error(exc, self.path) from exc

    def state(self) -> FileState:
        try:
            return state_of(os.fstat(self._fd))
        except OSError as exc:
            raise skip_for_os_error(exc, self.path) from exc

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._advise:
            with contextlib.suppress(OSError):
                os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(self._fd)


def check_regular(fd: int, path: str) -> int:
    """The size of `fd`; NotARegularFile (closing `fd`) unless it is a regular file."""
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise skip_for_os_error(exc, path) from exc
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotARegularFile(f"{path}: not a regular file")
    return st.st_size


class PosixFileAccess:
    """FileAccess through os.open(O_RDONLY | O_NOFOLLOW | O_NONBLOCK)."""

    FLAGS = (
        os.O_RDONLY
        | getattr(os, "O_NOFOLLOW", 0)
        | getattr(os, "O_NONBLOCK", 0)
        | getattr(os, "O_CLOEXEC", 0)
    )

    def open(self, path: str) -> OpenedFile:
        try:
            fd = os.open(path, self.FLAGS)
        except OSError as exc:
            raise skip_for_os_error(exc, path) from exc
        size = check_regular(fd, path)
        return FdFile(fd, path, advise=size >= ADVISE_FROM)


def default_file_access() -> FileAccess:
    """CreateFileW with full sharing on Windows, os.open elsewhere."""
    if os.name == "nt":  # pragma: no cover - Windows only
        from agent.images.winfile import Kernel32, WindowsFileAccess

        return WindowsFileAccess(Kernel32())
    return PosixFileAccess()
