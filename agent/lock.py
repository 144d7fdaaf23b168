"""The single-instance lock: one agent loop per state dir, and a way to see that it runs.

The lock is an OS file lock (flock on POSIX, msvcrt on Windows) on `agent.lock`
in the state dir, so it disappears with the process however it ends; the file
holds the owner's pid for `status`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from types import TracebackType

from agent.domain.errors import AlreadyRunning, StateDirUnusable

LOCK_FILE = "agent.lock"


class StateLock:
    """An exclusive, non-blocking lock on a state dir."""

    def __init__(self, state_root: Path) -> None:
        self.path = state_root / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and record our pid, or raise AlreadyRunning."""
        fd = self._open()
        if not _try_lock(fd):
            os.close(fd)
            pid = self.owner_pid()
            who = f" (pid {pid})" if pid else ""
            raise AlreadyRunning(
                f"another storesafe-agent is already running with the state dir "
                f"{self.path.parent}{who}; stop it first (or use another --state-dir)"
            )
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            _unlock(self._fd)
            os.close(self._fd)
            self._fd = None

    def is_held_elsewhere(self) -> bool:
        """True when another process holds the lock (an agent loop is running)."""
        if self._fd is not None or not self.path.exists():
            return False
        try:
            fd = os.open(self.path, os.O_RDWR)
        except OSError:
            return False
        try:
            if _try_lock(fd):
                _unlock(fd)
                return False
            return True
        finally:
            os.close(fd)

    def owner_pid(self) -> int | None:
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        return int(text) if text.isdigit() else None

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateDirUnusable(f"cannot open {self.path} ({exc.strerror or exc})") from exc

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        # Lock one byte far past the pid so reading the pid is never blocked.
        os.lseek(fd, 1 << 20, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 1 << 20, os.SEEK_SET)
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        os.lseek(fd, 0, os.SEEK_SET)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
