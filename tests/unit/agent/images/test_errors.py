"""OS and Windows errors map onto skip reasons in one table."""

from __future__ import annotations

import errno

import pytest

from agent.images.errors import skip_for_os_error, skip_for_winerror
from agent.images.result import SkipReason


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (32, SkipReason.BUSY),
        (33, SkipReason.BUSY),
        (2, SkipReason.VANISHED),
        (3, SkipReason.VANISHED),
        (303, SkipReason.VANISHED),
        (5, SkipReason.UNREADABLE),
        (206, SkipReason.TOO_LONG),
        (1234, SkipReason.UNREADABLE),
    ],
)
def test_windows_codes(code, reason):
    skip = skip_for_winerror(code, "C:\\Images\\a.jpg")
    assert skip.reason is reason and skip.message.startswith("C:\\Images\\a.jpg: ")


@pytest.mark.parametrize(
    ("err", "reason"),
    [
        (errno.ENOENT, SkipReason.VANISHED),
        (errno.ELOOP, SkipReason.SYMLINK),
        (errno.EACCES, SkipReason.UNREADABLE),
        (errno.EIO, SkipReason.UNREADABLE),
        (errno.ENAMETOOLONG, SkipReason.TOO_LONG),
        (errno.EAGAIN, SkipReason.BUSY),
        (errno.ENOSPC, SkipReason.UNREADABLE),
    ],
)
def test_errnos(err, reason):
    assert skip_for_os_error(OSError(err, "x"), "/img/a").reason is reason


def test_a_winerror_on_the_exception_wins():
    exc = OSError(errno.EACCES, "denied")
    exc.winerror = 32  # what Windows sets on a read of a locked range
    assert skip_for_os_error(exc, "a").reason is SkipReason.BUSY
