"""Which file access this system gets: share-all CreateFileW on Windows, os.open elsewhere."""

from __future__ import annotations

import os

from agent.images.fileaccess import FileAccess, PosixFileAccess


def default_file_access() -> FileAccess:
    """CreateFileW with full sharing on Windows, os.open elsewhere."""
    if os.name == "nt":  # pragma: no cover - Windows only
        from agent.images.winfile import Kernel32, WindowsFileAccess

        return WindowsFileAccess(Kernel32())
    return PosixFileAccess()
