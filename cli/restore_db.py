"""Restoring fetched backup files into a new Firebird database, validating it, counting its rows.

Through the services API of the Firebird server the technician names
(common/firebird, the same code the agent verifies its backups with): the
server reads the backup files and writes the database itself, so both paths
are the server's (this machine's, for a server on localhost) and its OS user
must be able to read PATH and write in the database's folder. A gbak file
counts as restored only with gbak's closing line; an nbackup chain is
restored level 0 first. Then Firebird's full read-only validation of the new
database, and exact row counts per table in one transaction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path

from common.errors import FailedPrecondition, StoreSafeError
from common.firebird.connection import FirebirdTarget, attach
from common.firebird.errors import FirebirdJobError, ValidationFailed
from common.firebird.restore import restore_chain, restore_fbk, server_version
from common.firebird.schema import count_rows, read_schema
from common.firebird.validation import validate_copy


@dataclasses.dataclass(frozen=True)
class Server:
    """The Firebird server a restore goes to, and its login."""

    host: str
    user: str
    password: str = dataclasses.field(repr=False)
    client_library: str | None = None

    def target(self, database: Path) -> FirebirdTarget:
        return FirebirdTarget(
            self.host, str(database), self.user, self.password, self.client_library
        )


@dataclasses.dataclass
class DatabaseCheck:
    """What the restore into a database found; `error` is None when every step passed."""

    database: Path
    restored: bool = False
    validation_errors: int = 0
    validation_warnings: int = 0
    table_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    error: StoreSafeError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def refuse_existing(database: Path, *, force: bool) -> None:
    """Refuse a database path that exists, unless `force`."""
    if (database.exists() or database.is_symlink()) and not force:
        raise FailedPrecondition(f"{database} exists; --force replaces it")


def restore_and_check(
    server: Server, method: str, files: list[Path], database: Path, *, force: bool = False
) -> DatabaseCheck:
    """Restore `files` into `database`, validate it and count its rows; never raises for
    what the database or Firebird says (it lands in `error`). A restore that fails leaves
    no database behind; one that restored but does not validate is kept to look at."""
    check = DatabaseCheck(database)
    target = server.target(database)
    began = time.monotonic()
    try:
        if method == "gbak":
            restore_fbk(target, files[0], database, what="the restore", replace=force)
        else:
            if force and database.exists():
                drop(server, database)
            restore_chain(
                target,
                files,
                database,
                server_version=server_version(target),
                what="the nbackup restore",
                database_mode=0o666,  # the nbackup tool writes it as this user: the server opens it
            )
        check.restored = True
        findings = validate_copy(target, database)
        check.validation_warnings = findings.warnings
        with attach(target, str(database), what="counting the restored rows") as con:
            check.table_counts = count_rows(con, read_schema(con).tables)
    except ValidationFailed as err:
        check.validation_errors = max(err.errors, 1)
        check.validation_warnings = err.warnings
        check.error = err
    except FirebirdJobError as err:
        check.error = err
        if not check.restored:  # a restore that failed half way leaves a partial database
            with contextlib.suppress(StoreSafeError):
                drop(server, database)
    finally:
        check.seconds = time.monotonic() - began
    return check


def drop(server: Server, database: Path) -> None:
    """Remove a database: dropped by the server (its files are the server's), else unlinked."""
    target = server.target(database)
    with (
        contextlib.suppress(Exception),  # a file Firebird cannot open is unlinked instead
        attach(target, str(database), what="dropping the database") as con,
    ):
        con.drop_database()
        return
    try:
        database.unlink(missing_ok=True)
    except OSError as err:
        raise FailedPrecondition(f"cannot remove {database}: {err.strerror}") from None
