"""fdb exceptions and OS errors map onto stable error classes."""

from __future__ import annotations

import errno

import pytest

from common.firebird import errors as e


def fdb_error(gds: int, text: str = "boom") -> Exception:
    return Exception(text, -902, gds)


@pytest.mark.parametrize(
    ("exc", "error_class"),
    [
        (fdb_error(335544472, "Your user name and password are not defined"), "firebird.auth"),
        (fdb_error(335544721, "Unable to complete network request"), "firebird.unreachable"),
        (
            fdb_error(335544344, "I/O error open\n- No such file or directory"),
            "firebird.database_missing",
        ),
        (fdb_error(335544344, "I/O error write\n- No space left on device"), "disk.full"),
        (fdb_error(336331022, "gbak write failed"), "disk.full"),
        (fdb_error(337117224, "nbackup write"), "disk.full"),
        (fdb_error(336330817, "cannot open backup file"), "backup.dir_not_writable"),
        (fdb_error(336330797, "expected backup description record"), "backup.corrupt"),
        (fdb_error(335544716, "service is busy"), "firebird.busy"),
        (fdb_error(335740952, "validation error"), "verify.validation_failed"),
        (fdb_error(1, "something else"), "firebird.error"),
        (OSError(errno.ENOSPC, "No space left", "/b/x"), "disk.full"),
        (OSError(errno.EACCES, "Permission denied", "/b/x"), "backup.dir_not_writable"),
        (OSError(errno.EROFS, "Read-only", "/b/x"), "backup.dir_not_writable"),
        (OSError(errno.ENOENT, "No such file", "/b/x"), "backup.dir_missing"),
    ],
)
def test_translate(exc: Exception, error_class: str) -> None:
    err = e.translate(exc, what="the backup")
    assert err.error_class == error_class
    assert err.message.endswith(".")


def test_typed_errors_pass_through_and_subclass_storesafe_error() -> None:
    from common.errors import StoreSafeError

    original = e.DiskFull("full.")
    assert e.translate(original, what="x") is original
    assert isinstance(original, StoreSafeError)


def test_fdb_message_is_one_line() -> None:
    exc = fdb_error(1, "Error while connecting:\n- SQLCODE: -902\n- Unable to complete")
    assert "\n" not in e.fdb_message(exc)
