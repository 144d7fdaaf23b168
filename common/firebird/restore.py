"""Restoring a backup into a new database: a gbak file (services API) or an nbackup chain.

Both sides use it: the agent for its test restore of every backup, the admin
CLI for a restore from the off-site store. The paths are the Firebird
server's (it reads the backup and writes the database itself). A gbak
restore counts only with gbak's closing line in its log (Firebird 3 can end
the service without an error when gbak stopped early). nbackup restores obey
CORE-6498: where a failing services call could take the server down (Linux
3.0.x before 3.0.12) the `nbackup` command-line tool runs instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from common.firebird.connection import FirebirdTarget, parse_version, services
from common.firebird.errors import (
    AuthFailed,
    DatabaseMissing,
    DiskFull,
    FirebirdJobError,
    RestoreFailed,
    Unreachable,
    translate,
)
from common.firebird.gbaklog import GbakLog, check_restored

NBACKUP_FIXED_IN = (3, 0, 12)


def restore_fbk(
    target: FirebirdTarget,
    fbk: Path,
    database: Path,
    *,
    what: str = "the test restore",
    replace: bool = False,
) -> dict[str, int]:
    """Restore the gbak file `fbk` into a new `database` (over an existing one only with
    `replace`); return restored record counts."""
    with services(target, what=f"starting {what}") as svc:
        try:
            svc.restore(str(fbk), str(database), replace=int(replace))
            log = GbakLog(restore=True)
            for line in svc:
                log.feed(line)
        except Exception as exc:
            raise restore_error(exc, what=what) from exc
    check_restored(list(log.tail), what=what)
    return log.counts


def restore_error(exc: BaseException, *, what: str = "the test restore") -> FirebirdJobError:
    """A failed restore as a typed error (RestoreFailed unless it is something more precise)."""
    err = translate(exc, what=what)
    if type(err) is FirebirdJobError:
        err = RestoreFailed(f"{what[0].upper()}{what[1:]} failed: {err.message}")
    return err


def services_call_is_safe(server_version: str, *, platform: str = sys.platform) -> bool:
    """False where a failing nbackup services call can kill the server (CORE-6498)."""
    if server_version.startswith("WI-") or (platform == "win32" and "LI-" not in server_version):
        return True
    version = parse_version(server_version)
    return not (version[:2] == (3, 0) and version < NBACKUP_FIXED_IN)


def server_version(target: FirebirdTarget) -> str:
    """The Firebird server's version string ('LI-V3.0.11.33637 Firebird 3.0')."""
    with services(target, what="asking the server's version") as svc:
        try:
            return str(svc.get_server_version())
        except Exception as exc:
            raise translate(exc, what="asking the server's version") from exc


def restore_chain(
    target: FirebirdTarget,
    files: list[Path],
    database: Path,
    *,
    server_version: str,
    database_mode: int = 0o660,
    what: str = "the nbackup test restore",
) -> None:
    """Restore a chain of nbackup level files (level 0 first) into a new `database`.

    A failing restore leaves a partial target: it is removed. `database_mode` is
    given to a database the command-line tool wrote as this process's user, so
    the server can open it.
    """
    try:
        if services_call_is_safe(server_version):
            with services(target, what=f"starting {what}") as svc:
                try:
                    svc.nrestore([str(f) for f in files], str(database))
                except Exception as exc:
                    raise translate(exc, what=what) from exc
        else:
            tool = shutil.which("nbackup") or "/usr/bin/nbackup"
            proc = subprocess.run(
                [tool, "-R", str(database), *map(str, files)],
                capture_output=True,
                text=True,
                check=False,
                stdin=subprocess.DEVNULL,
            )
            if proc.returncode != 0:
                raise nbackup_tool_error(proc.stderr + proc.stdout)
            os.chmod(database, database_mode)
    except BaseException:
        with contextlib.suppress(OSError):
            database.unlink()
        raise


def nbackup_tool_error(output: str) -> FirebirdJobError:
    """What the `nbackup` command-line tool's output says went wrong, as a typed error."""
    text = " ".join(output.split())
    lowered = text.lower()
    if "no space left" in lowered:
        return DiskFull(f"The disk filled up during the nbackup: {text}.")
    if "password" in lowered and "user name" in lowered:
        return AuthFailed("Firebird refused the user name or password during the nbackup.")
    if "unable to complete network request" in lowered:
        return Unreachable(f"The Firebird server could not be reached for the nbackup: {text}.")
    if "no such file" in lowered:
        return DatabaseMissing(f"Firebird cannot find the database for the nbackup: {text}.")
    return FirebirdJobError(f"The nbackup tool failed: {text}.")
