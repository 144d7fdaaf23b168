"""The typed errors of image-folder work, and the one table mapping OS errors onto skip reasons."""

from __future__ import annotations

import errno
from typing import ClassVar

from agent.images.result import SkipReason
from common.errors import FailedPrecondition, StoreSafeError

# Windows system error codes (winerror.h) met when opening or reading a file.
ERROR_FILE_NOT_FOUND = 2
ERROR_PATH_NOT_FOUND = 3
ERROR_ACCESS_DENIED = 5
ERROR_SHARING_VIOLATION = 32
ERROR_LOCK_VIOLATION = 33
ERROR_BAD_NETPATH = 53
ERROR_FILENAME_EXCED_RANGE = 206
ERROR_DELETE_PENDING = 303
ERROR_CANT_ACCESS_FILE = 1920


class IndexUnusable(FailedPrecondition):
    """The image index in the state dir cannot be opened or written."""

    code = "image_index_unusable"


class PassAlreadyRunning(FailedPrecondition):
    """A scan pass over this index is running already."""

    code = "image_pass_running"


class OutsideUploadWindow(FailedPrecondition):
    """No image-sync pass starts outside `upload.window`."""

    code = "outside_upload_window"


class FileSkipped(StoreSafeError):
    """A file that cannot be read in this pass; `reason` says why, the pass goes on."""

    code = "failed_precondition"
    reason: ClassVar[SkipReason] = SkipReason.UNREADABLE


class FileBusy(FileSkipped):
    code = "unavailable"
    reason = SkipReason.BUSY


class FileVanished(FileSkipped):
    code = "not_found"
    reason = SkipReason.VANISHED


class FileUnreadable(FileSkipped):
    code = "permission_denied"
    reason = SkipReason.UNREADABLE


class IsALink(FileSkipped):
    reason = SkipReason.SYMLINK


class NotARegularFile(FileSkipped):
    reason = SkipReason.NOT_REGULAR


class PathTooLong(FileSkipped):
    code = "invalid_argument"
    reason = SkipReason.TOO_LONG


class ChangedWhileRead(FileSkipped):
    """The file changed while it was read: what was read must not be stored."""

    reason = SkipReason.CHANGED_WHILE_READ


_BY_WINERROR: dict[int, tuple[type[FileSkipped], str]] = {
    ERROR_SHARING_VIOLATION: (FileBusy, "another program has it open without sharing"),
    ERROR_LOCK_VIOLATION: (FileBusy, "another program has locked part of it"),
    ERROR_FILE_NOT_FOUND: (FileVanished, "it was removed before it could be read"),
    ERROR_PATH_NOT_FOUND: (FileVanished, "its folder was removed before it could be read"),
    ERROR_DELETE_PENDING: (FileVanished, "it is being deleted"),
    ERROR_ACCESS_DENIED: (FileUnreadable, "access is denied"),
    ERROR_CANT_ACCESS_FILE: (FileUnreadable, "the system cannot access it"),
    ERROR_BAD_NETPATH: (FileUnreadable, "the network path is unreachable"),
    ERROR_FILENAME_EXCED_RANGE: (PathTooLong, "the path is longer than Windows allows"),
}

_BY_ERRNO: dict[int, tuple[type[FileSkipped], str]] = {
    errno.ENOENT: (FileVanished, "it was removed before it could be read"),
    errno.ENOTDIR: (FileVanished, "its folder was replaced before it could be read"),
    errno.ELOOP: (IsALink, "it became a symbolic link"),
    errno.EACCES: (FileUnreadable, "permission denied"),
    errno.EPERM: (FileUnreadable, "operation not permitted"),
    errno.EIO: (FileUnreadable, "input/output error (a failing disk?)"),
    errno.ENAMETOOLONG: (PathTooLong, "the path is longer than the system allows"),
    errno.ETXTBSY: (FileBusy, "another program has it busy"),
    errno.EAGAIN: (FileBusy, "another program holds a lock on it"),
}


def skip_for_winerror(code: int, path: str) -> FileSkipped:
    """The skip for Windows error `code` met on `path` (an unknown code: unreadable)."""
    cls, why = _BY_WINERROR.get(code, (FileUnreadable, f"Windows error {code}"))
    return cls(f"{path}: {why}")


def skip_for_os_error(exc: OSError, path: str) -> FileSkipped:
    """The skip for an OSError met opening, listing or reading `path`."""
    winerror = getattr(exc, "winerror", None)
    if isinstance(winerror, int) and winerror in _BY_WINERROR:
        return skip_for_winerror(winerror, path)
    if exc.errno is not None and exc.errno in _BY_ERRNO:
        cls, why = _BY_ERRNO[exc.errno]
        return cls(f"{path}: {why}")
    return FileUnreadable(f"{path}: {exc.strerror or exc}")
