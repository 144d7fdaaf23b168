"""Logical (gbak) backup and restore through the services API, with their logs parsed.

The server writes the backup into a named pipe in the spool folder (POSIX;
elsewhere a file the agent follows as it grows) and the agent compresses and
hashes what comes through, so only the compressed copy reaches the disk; a thread drains the service
output, which is where fdb surfaces errors and where the per-table record
counts are. A test restore goes the other way: the server reads the backup
from a pipe that the agent decompresses it into (elsewhere from a scratch file).
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import priority
from agent.firebird import decompress, pipes, stream
from agent.firebird.activity import ShopActivity
from agent.firebird.files import Spool, remove_quietly
from common.firebird.connection import FirebirdTarget, require_ascii, services
from common.firebird.errors import (
    BackupCorrupt,
    BackupFailed,
    translate,
)
from common.firebird.gbaklog import GbakLog, check_restored
from common.firebird.restore import restore_error, restore_fbk

# gbak's restore first reads the start of its file to see whether it is part of
# a gsplit set, then seeks back to 0, which a pipe cannot do: it gets a byte of
# its own to read (and throw away) before the backup starts.
_SPLIT_PROBE_LEAD = b"\0"


class _Drain(threading.Thread):
    """Reads a running service's output to its end, parsing it and keeping any error."""

    def __init__(self, svc: Any, *, restore: bool = False) -> None:
        super().__init__(name="gbak-output", daemon=True)
        self.svc = svc
        self.log = GbakLog(restore=restore)
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            for line in self.svc:
                self.log.feed(line)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            self.error = exc
        finally:
            self.done.set()


@dataclasses.dataclass(frozen=True)
class GbakResult:
    compressed: stream.Compressed
    counts: dict[str, int]
    seconds: float


def backup(target: FirebirdTarget, spool: Spool, partial: Path) -> GbakResult:
    """gbak the live database into `partial` (zstd, fsynced), following the server's file.

    On any failure both the server's file and `partial` are removed.
    """
    require_ascii(str(spool.path), what="backup.dir")
    piped = pipes.SUPPORTED
    server_file = spool.scratch(".pipe" if piped else ".fbk")
    started = time.monotonic()
    try:
        if piped:  # the server may write into it, nobody else may read it
            pipes.make_pipe(server_file, 0o620 if spool.file_mode == 0o640 else 0o622)
        with services(target, what="starting the backup") as svc:
            try:
                svc.backup(target.database, str(server_file), collect_garbage=0)
            except Exception as exc:
                raise translate(exc, what="starting the backup") from exc
            drain = _Drain(svc)
            drain.start()
            if piped:
                with ShopActivity(target) as shop:
                    compressed, local_error = _follow_pipe(
                        server_file, partial, drain, spool.file_mode, shop.busy
                    )
            else:
                compressed, local_error = _follow(server_file, partial, drain, spool.file_mode)
            drain.join()
        # Our own failure first: when we stop reading (a full disk), the server's
        # write fails next, and its "I/O error" would hide the cause.
        if local_error is not None:
            raise translate(local_error, what="compressing the backup")
        if drain.error is not None:
            raise translate(drain.error, what="the backup")
        _check_complete(list(drain.log.tail), compressed)
        counts = drain.log.counts
    except BaseException:
        remove_quietly(partial, server_file)
        raise
    remove_quietly(server_file)
    return GbakResult(compressed=compressed, counts=counts, seconds=time.monotonic() - started)


def _follow(
    server_file: Path, partial: Path, drain: _Drain, mode: int
) -> tuple[stream.Compressed, OSError | None]:
    try:
        return priority.run_niced(
            lambda: stream.compress_following(
                server_file,
                partial,
                finished=drain.done.is_set,
                mode=mode,
                on_finished=priority.leave_idle,
            ),
            idle=True,  # gbak and the shop's own work first; see stream's docstring
        ), None
    except OSError as exc:
        # Most likely the disk is full: free our share at once; gbak will stop on
        # its own (same disk) or finish, and its file is removed afterwards.
        remove_quietly(partial)
        drain.done.wait()
        return stream.Compressed(0, 0, ""), exc


def _follow_pipe(
    pipe: Path, partial: Path, drain: _Drain, mode: int, shop_busy: Callable[[], bool]
) -> tuple[stream.Compressed, OSError | None]:
    """As _follow, reading the server's writes from a named pipe (nothing raw on disk).

    The compressor paces the server here, so it runs niced but not at idle priority.
    """
    try:
        return priority.run_niced(
            lambda: stream.compress_pipe(
                pipe, partial, finished=drain.done.is_set, mode=mode, shop_busy=shop_busy
            )
        ), None
    except OSError as exc:
        remove_quietly(partial)  # closing our end fails the server's writes: it stops
        drain.done.wait()
        return stream.Compressed(0, 0, ""), exc


def _check_complete(lines: list[str], compressed: stream.Compressed) -> None:
    tail = " ".join(lines[-4:])
    m = re.search(r"finishing\. (\d+) bytes written", tail)
    if not m:
        raise BackupFailed("The backup ended without gbak's closing line; it is incomplete.")
    if int(m.group(1)) != compressed.size_raw:
        raise BackupFailed(
            f"gbak reports {m.group(1)} bytes but the agent read {compressed.size_raw}; "
            "the backup was discarded."
        )


def restore_compressed(
    target: FirebirdTarget, spool: Spool, src: Path, database: Path, *, expected_sha256: str
) -> dict[str, int]:
    """Restore the zstd backup `src` into a new `database`; return restored record counts.

    The server reads the backup from a named pipe in the spool folder that the
    agent decompresses into meanwhile (POSIX), so no decompressed copy reaches
    the disk; elsewhere the agent decompresses into a scratch file first. A
    damaged `src` (BackupCorrupt) or an OSError reading it is raised as it is,
    before the server's error that it causes.
    """
    if not pipes.SUPPORTED:
        return _restore_from_file(target, spool, src, database, expected_sha256)
    # A restore whose input ends early makes Firebird 3 drop the service connection,
    # and a new connection right after it was then sometimes rejected ("connection
    # rejected by remote interface"; the server logs "send errno = 9"): the file is
    # checked whole before the server reads any of it, so a backup damaged on disk
    # never starts a doomed restore. The check during the restore still stands.
    priority.run_niced(lambda: decompress.check_sha256(src, expected_sha256))
    pipe = spool.scratch(".pipe")
    try:
        pipes.make_pipe(pipe, spool.file_mode)  # the server may read it, only the agent write
        with services(target, what="restoring the backup") as svc:
            try:
                svc.restore(str(pipe), str(database), replace=0)
            except Exception as exc:
                raise restore_error(exc) from exc
            drain = _Drain(svc, restore=True)
            drain.start()
            local_error = _feed_pipe(src, pipe, drain, expected_sha256)
            drain.join()
    finally:
        remove_quietly(pipe)
    # Our own failure first: a damaged backup cut short fails the server's reading too.
    if local_error is not None:
        raise local_error
    if drain.error is not None:
        raise restore_error(drain.error) from drain.error
    check_restored(list(drain.log.tail))
    return drain.log.counts


def _feed_pipe(
    src: Path, pipe: Path, drain: _Drain, expected_sha256: str
) -> BackupCorrupt | OSError | None:
    """Decompress `src` into the pipe the server restores from; return our failure, if any.

    The server waits for the decompressor here, so it runs niced but not at idle priority.
    """
    try:
        priority.run_niced(
            lambda: decompress.decompress_to_pipe(
                src,
                pipe,
                expected_sha256=expected_sha256,
                finished=drain.done.is_set,
                lead=_SPLIT_PROBE_LEAD,
            )
        )
    except (BackupCorrupt, OSError) as exc:
        return exc  # our end of the pipe is closed: the server's restore stops at its end
    return None


def _restore_from_file(
    target: FirebirdTarget, spool: Spool, src: Path, database: Path, expected_sha256: str
) -> dict[str, int]:
    fbk = spool.scratch(".fbk")
    try:
        decompress.decompress_niced(src, fbk, expected_sha256=expected_sha256, mode=spool.file_mode)
        return restore_fbk(target, fbk, database)
    finally:
        remove_quietly(fbk)
