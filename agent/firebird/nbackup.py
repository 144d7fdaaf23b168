"""Physical (nbackup) backup levels, done so that they can never take the shop's server down.

CORE-6498: on Linux, Firebird 3.0.6-3.0.11 stops serving when an nbackup
*services* call fails (level N without level N-1 in RDB$BACKUP_HISTORY, level 0
while stalled, ...). So before every nbackup the agent checks: the database is
in normal backup state, level N-1 exists in the history and is one of the
agent's own backups, the target file does not exist. And on Linux before
3.0.12 it runs the `nbackup` command-line tool (a separate process that reads
the database pages itself) instead of the services call. Windows servers and
3.0.12+ use the services call.

A database left stalled by a crashed nbackup (its .delta grows forever) is
ended with `ALTER DATABASE END BACKUP`, which merges the delta online; never
with `nbackup -F` on the live file, which would throw the delta away.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from agent import priority
from agent.firebird import stream
from agent.firebird.files import Manifest, Spool, Status, remove_quietly
from agent.firebird.health import BACKUP_STATE_NORMAL, backup_state
from common.firebird.connection import FirebirdTarget, attach, services
from common.firebird.errors import (
    DatabaseStalled,
    NbackupPrecondition,
    translate,
)
from common.firebird.restore import nbackup_tool_error, restore_chain, services_call_is_safe

END_BACKUP_WAIT_SECONDS = 120.0


def end_stalled(
    target: FirebirdTarget, *, wait_seconds: float = END_BACKUP_WAIT_SECONDS
) -> str | None:
    """End a stalled backup state left by a crash; return a problem line if one was found."""
    with attach(target, what="connecting to the database") as con:
        state = backup_state(con)
        if state == BACKUP_STATE_NORMAL:
            return None
        if state == 1:
            try:
                con.execute_immediate("ALTER DATABASE END BACKUP")
                con.commit()
            except Exception as exc:
                raise DatabaseStalled(
                    f"The database is locked by an unfinished nbackup and ending it failed "
                    f"({translate(exc, what='ending the backup state').message})"
                ) from exc
        deadline = time.monotonic() + wait_seconds
        while backup_state(con) != BACKUP_STATE_NORMAL:
            if time.monotonic() > deadline:
                raise DatabaseStalled(
                    "The database is still merging an nbackup delta file; try again later."
                )
            time.sleep(0.2)
    return "The database was left locked by an unfinished nbackup (stalled); the agent ended it."


@dataclasses.dataclass(frozen=True)
class NbackupResult:
    compressed: stream.Compressed
    guid: str
    chain: list[str]
    seconds: float


def plan_chain(
    level: int, history: dict[int, str], backups: list[Manifest], database: str
) -> list[str]:
    """The agent's files for levels 0..level-1 that a level `level` backup builds on.

    `history` maps level -> GUID of the newest RDB$BACKUP_HISTORY row at that level.
    """
    chain: list[str] = []
    for lower in range(level):
        guid = history.get(lower)
        mine = [
            m
            for m in backups
            if m.method == "nbackup"
            and m.level == lower
            and m.database == database
            and m.status != Status.BAD
        ]
        match = next((m for m in reversed(mine) if m.nbackup_guid == guid), None)
        if guid is None or match is None:
            raise NbackupPrecondition(
                f"An nbackup level {level} needs the newest level {lower} backup of this "
                "database in backup.dir; run a level 0 backup first."
            )
        chain.append(match.file)
    return chain


def read_history(con: Any) -> dict[int, str]:
    """Newest backup GUID per level from RDB$BACKUP_HISTORY."""
    cur = con.cursor()
    cur.execute(
        "SELECT RDB$BACKUP_LEVEL, TRIM(RDB$GUID) FROM RDB$BACKUP_HISTORY ORDER BY RDB$BACKUP_ID"
    )
    newest = {int(level): str(guid) for level, guid in cur.fetchall()}
    con.commit()
    return newest


def backup(
    target: FirebirdTarget,
    spool: Spool,
    partial: Path,
    *,
    level: int,
    backups: list[Manifest],
    server_version: str,
) -> NbackupResult:
    """Take nbackup `level` of the live database into `partial` (zstd, fsynced)."""
    started = time.monotonic()
    raw = spool.scratch(".nbk")
    with attach(target, what="checking nbackup preconditions") as con:
        if backup_state(con) != BACKUP_STATE_NORMAL:
            raise NbackupPrecondition("The database is not in normal backup state.")
        chain = plan_chain(level, read_history(con), backups, target.database)
    if raw.exists():
        raise NbackupPrecondition(f"The nbackup target {raw} exists already.")
    try:
        if services_call_is_safe(server_version):
            _via_services(target, raw, level)
        else:
            _via_cli(target, raw, level)
        with attach(target, what="reading the nbackup history") as con:
            guid = read_history(con).get(level, "")
        compressed = priority.run_niced(
            lambda: stream.compress_following(
                raw, partial, finished=lambda: True, mode=spool.file_mode
            )
        )
    except BaseException:
        remove_quietly(raw, partial)
        raise
    remove_quietly(raw)
    return NbackupResult(compressed, guid, chain, time.monotonic() - started)


def _via_services(target: FirebirdTarget, raw: Path, level: int) -> None:
    with services(target, what="the nbackup") as svc:
        try:
            svc.nbackup(target.database, str(raw), nbackup_level=level)
        except Exception as exc:
            raise translate(exc, what="the nbackup") from exc


def _via_cli(target: FirebirdTarget, raw: Path, level: int) -> None:
    tool = shutil.which("nbackup") or "/usr/bin/nbackup"
    env = {**os.environ, "ISC_USER": target.user, "ISC_PASSWORD": target.password}
    proc = subprocess.run(
        [tool, "-B", str(level), target.dsn, str(raw)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise nbackup_tool_error(proc.stderr + proc.stdout)


def restore(
    target: FirebirdTarget, spool: Spool, files: list[Path], database: Path, *, server_version: str
) -> None:
    """Restore a chain of level files (server-side paths) into a new `database`."""
    restore_chain(
        target,
        files,
        database,
        server_version=server_version,
        database_mode=0o660 if spool.file_mode == 0o640 else 0o666,
    )
