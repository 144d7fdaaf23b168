"""The typed errors of Firebird backup work, and the one table mapping fdb errors onto them.

Every error carries a stable `error_class` (what the run report and the server
show) and a one-sentence message a technician can act on. Passwords never
appear in messages: fdb's own texts do not contain them and we add none.
"""

from __future__ import annotations

import errno
import re
from typing import ClassVar

from common.errors import StoreSafeError


class FirebirdJobError(StoreSafeError):
    """Base of every backup, verification and validation failure."""

    code = "internal"
    error_class: ClassVar[str] = "firebird.error"


class ClientLibraryMissing(FirebirdJobError):
    code = "failed_precondition"
    error_class = "firebird.client_library"


class AuthFailed(FirebirdJobError):
    code = "unauthenticated"
    error_class = "firebird.auth"


class Unreachable(FirebirdJobError):
    code = "unavailable"
    error_class = "firebird.unreachable"


class DatabaseMissing(FirebirdJobError):
    code = "not_found"
    error_class = "firebird.database_missing"


class NonAsciiPath(FirebirdJobError):
    code = "invalid_argument"
    error_class = "firebird.non_ascii_path"


class ServiceBusy(FirebirdJobError):
    code = "unavailable"
    error_class = "firebird.busy"


class DatabaseStalled(FirebirdJobError):
    """The database is in nbackup's stalled/merge state and could not be ended."""

    code = "failed_precondition"
    error_class = "firebird.stalled"


class NbackupPrecondition(FirebirdJobError):
    code = "failed_precondition"
    error_class = "nbackup.precondition"


class BackupDirMissing(FirebirdJobError):
    code = "failed_precondition"
    error_class = "backup.dir_missing"


class BackupDirNotWritable(FirebirdJobError):
    code = "permission_denied"
    error_class = "backup.dir_not_writable"


class BackupBusy(FirebirdJobError):
    code = "failed_precondition"
    error_class = "backup.busy"


class DiskFull(FirebirdJobError):
    code = "resource_exhausted"
    error_class = "disk.full"


class BackupFailed(FirebirdJobError):
    error_class = "backup.failed"


class BackupCorrupt(FirebirdJobError):
    code = "failed_precondition"
    error_class = "backup.corrupt"
    file: str = ""  # the damaged file's name in backup.dir, when known


class RestoreFailed(FirebirdJobError):
    error_class = "verify.restore_failed"


class UnsafeRestoreTarget(FirebirdJobError):
    code = "failed_precondition"
    error_class = "verify.unsafe_target"


class ValidationFailed(FirebirdJobError):
    code = "failed_precondition"
    error_class = "verify.validation_failed"
    errors: int = 0  # what Firebird counted, when it said
    warnings: int = 0


class SchemaMismatch(FirebirdJobError):
    code = "failed_precondition"
    error_class = "verify.schema_mismatch"


class CountMismatch(FirebirdJobError):
    code = "failed_precondition"
    error_class = "verify.count_mismatch"


class LiveValidationErrors(FirebirdJobError):
    code = "failed_precondition"
    error_class = "validate.errors_found"


# gdscodes seen on Firebird 3.0 (see shared/notes/firebird.md).
GDS_LOGIN = 335544472
GDS_NETWORK = 335544721
GDS_IO = 335544344
GDS_GBAK_CANNOT_OPEN = 336330817
GDS_GBAK_WRITE_FAILED = 336331022
GDS_NBACKUP_WRITE = 337117224
GDS_GBAK_NOT_BACKUP = 336330797
GDS_SVC_BUSY = 335544716
GDS_VALIDATION = 335740952


def gdscode(exc: BaseException) -> int | None:
    """The Firebird status code of an fdb exception (`args == (msg, sqlcode, gdscode)`)."""
    args: tuple[object, ...] = tuple(getattr(exc, "args", ()))
    code = args[2] if len(args) >= 3 else None
    return code if isinstance(code, int) else None


def fdb_message(exc: BaseException) -> str:
    """fdb's message text squeezed onto one line."""
    args = getattr(exc, "args", ())
    text = args[0] if args and isinstance(args[0], str) else str(exc)
    parts = [part.strip(" -") for part in text.splitlines()]
    kept = [p for p in parts if p and not _NOISE.match(p)]
    return " ".join(kept).removesuffix(".")


_NOISE = re.compile(
    r"^(SQLCODE: -?\d+|Services/isc_service_\w+:|Error while connecting to database:"
    r"|Unable to perform the requested Service API action:|Exiting before completion.*)$"
)


def translate(exc: BaseException, *, what: str) -> FirebirdJobError:
    """Map an fdb or OS error raised while doing `what` onto the typed hierarchy."""
    if isinstance(exc, FirebirdJobError):
        return exc
    if isinstance(exc, OSError):
        return _translate_os(exc, what=what)
    code = gdscode(exc)
    detail = fdb_message(exc)
    lowered = detail.lower()
    if "no space left" in lowered or code in (GDS_GBAK_WRITE_FAILED, GDS_NBACKUP_WRITE):
        return DiskFull(f"The disk filled up during {what}: {detail}.")
    if code == GDS_LOGIN:
        return AuthFailed(
            f"Firebird refused the user name or password during {what}; "
            "check firebird.user and firebird.password."
        )
    if code == GDS_NETWORK:
        return Unreachable(
            f"The Firebird server could not be reached during {what}; "
            f"check that it is running and firebird.host is right ({detail})."
        )
    if code == GDS_IO and ("no such file" in lowered or "not found" in lowered):
        return DatabaseMissing(f"Firebird cannot find the database during {what}: {detail}.")
    if code == GDS_GBAK_CANNOT_OPEN or "permission denied" in lowered:
        return BackupDirNotWritable(
            f"The Firebird server cannot write its backup file during {what}; "
            f"the server's OS user needs write access to backup.dir ({detail})."
        )
    if code == GDS_GBAK_NOT_BACKUP:
        return BackupCorrupt(f"The file is not a valid gbak backup ({detail}).")
    if code == GDS_SVC_BUSY:
        return ServiceBusy(f"The Firebird service connection was busy during {what}.")
    if code == GDS_VALIDATION:
        return ValidationFailed(f"Firebird validation found errors during {what}: {detail}.")
    return FirebirdJobError(f"Firebird failed during {what}: {detail}.")


def _translate_os(exc: OSError, *, what: str) -> FirebirdJobError:
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"The disk filled up during {what}{where}.")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return BackupDirNotWritable(f"The agent may not write during {what}{where}.")
    if exc.errno == errno.ENOENT:
        return BackupDirMissing(f"A folder needed for {what} does not exist{where}.")
    return FirebirdJobError(f"An I/O error happened during {what}{where}: {exc.strerror}.")
