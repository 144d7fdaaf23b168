"""Opening a shop file on Windows with read, write and delete sharing, through CreateFileW.

Python's `open()` shares read and write but not delete, so while it reads a
file the shop program cannot delete or rename it. Here the file is opened with
CreateFileW(GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE |
FILE_SHARE_DELETE, OPEN_EXISTING, FILE_FLAG_SEQUENTIAL_SCAN) and the handle
becomes a CRT descriptor with `msvcrt.open_osfhandle` (closing the descriptor
closes the handle). A sharing or lock violation means the shop program holds
the file: the file is skipped as busy and tried again next pass. The calls go
through `Win32Api`, so the logic runs in tests on Linux against a fake
(tests/support/imagefiles.py); `Kernel32` is the real one and stays thin.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Protocol

from agent.images.errors import skip_for_os_error, skip_for_winerror
from agent.images.fileaccess import FdFile, OpenedFile, check_regular

GENERIC_READ = 0x80000000
FILE_SHARE_READ = 0x1
FILE_SHARE_WRITE = 0x2
FILE_SHARE_DELETE = 0x4
FILE_SHARE_ALL = FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE
OPEN_EXISTING = 3
FILE_FLAG_SEQUENTIAL_SCAN = 0x08000000
OSF_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOINHERIT", 0)


class Win32Api(Protocol):
    """The few Win32 calls opening a file takes."""

    def create_file(
        self, path: str, access: int, share: int, disposition: int, flags: int
    ) -> int | None:
        """CreateFileW; the handle, or None when it failed (then `last_error` says why)."""
        ...

    def last_error(self) -> int: ...

    def open_osfhandle(self, handle: int, flags: int) -> int:
        """msvcrt.open_osfhandle: a CRT descriptor owning `handle`; raises OSError."""
        ...

    def close_handle(self, handle: int) -> None: ...


class WindowsFileAccess:
    """FileAccess through CreateFileW with full sharing."""

    def __init__(self, api: Win32Api) -> None:
        self._api = api

    def open(self, path: str) -> OpenedFile:
        handle = self._api.create_file(
            path, GENERIC_READ, FILE_SHARE_ALL, OPEN_EXISTING, FILE_FLAG_SEQUENTIAL_SCAN
        )
        if handle is None:
            raise skip_for_winerror(self._api.last_error(), path)
        try:
            fd = self._api.open_osfhandle(handle, OSF_FLAGS)
        except OSError as exc:
            self._api.close_handle(handle)
            raise skip_for_os_error(exc, path) from exc
        check_regular(fd, path)
        return FdFile(fd, path)


class Kernel32:  # pragma: no cover - Windows only
    """The real Win32Api, through ctypes."""

    def __init__(self) -> None:
        import ctypes
        from ctypes import wintypes

        lib: Any = ctypes
        kernel32 = lib.WinDLL("kernel32", use_last_error=True)
        self._create = kernel32.CreateFileW
        self._create.argtypes = [
            wintypes.LPCWSTR,
            wintypes.DWORD,
            wintypes.DWORD,
            wintypes.LPVOID,
            wintypes.DWORD,
            wintypes.DWORD,
            wintypes.HANDLE,
        ]
        self._create.restype = wintypes.HANDLE
        self._close = kernel32.CloseHandle
        self._close.argtypes = [wintypes.HANDLE]
        self._close.restype = wintypes.BOOL
        self._invalid = ctypes.c_void_p(-1).value
        self._get_last_error = lib.get_last_error
        self._msvcrt: Any = importlib.import_module("msvcrt")

    def create_file(
        self, path: str, access: int, share: int, disposition: int, flags: int
    ) -> int | None:
        handle = self._create(path, access, share, None, disposition, flags, None)
        if handle is None or handle == self._invalid:
            return None
        return int(handle)

    def last_error(self) -> int:
        return int(self._get_last_error())

    def open_osfhandle(self, handle: int, flags: int) -> int:
        return int(self._msvcrt.open_osfhandle(handle, flags))

    def close_handle(self, handle: int) -> None:
        self._close(handle)
