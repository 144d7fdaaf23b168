"""Named pipes between the agent and the database server (POSIX).

The server writes a backup into a pipe the agent compresses from, and restores
from a pipe the agent decompresses into, so no uncompressed copy reaches the
disk. The server runs as another OS user and may fail before it opens its end,
or never open it: the agent's end never waits for it without a way out.
"""

from __future__ import annotations

import array
import contextlib
import errno
import os
import select
import time
from collections.abc import Callable
from pathlib import Path

OPEN_POLL_SECONDS = 0.02

SUPPORTED = hasattr(os, "mkfifo") and hasattr(select, "poll")


BUFFER = 1 << 20
NARROW = 16 << 10  # gbak and the compressor take turns in small steps


_F_SETPIPE_SZ = 1031  # Linux fcntl


def make_pipe(path: Path, mode: int) -> None:
    """Create a named pipe the database server writes a backup into or restores one from (POSIX)."""
    os.mkfifo(path, mode)
    os.chmod(path, mode)  # mkfifo applies the umask


def widen_pipe(fd: int) -> None:
    """Ask for a BUFFER-sized pipe (Linux), so writer and reader wait on each other less."""
    resize_pipe(fd, BUFFER)


def resize_pipe(fd: int, size: int) -> bool:
    """Ask for a pipe of `size` bytes (Linux); False where refused (e.g. more is queued)."""
    import fcntl  # POSIX only, like the pipe itself

    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, size)
    except OSError:
        return False
    return True


class PipeWriter:
    """The writing end of a named pipe whose reader (the database server) may fail or never come.

    Entering waits for the reader to open the pipe, or for `finished()`. `write`
    returns False once the reader has gone. Leaving closes the pipe, which ends
    the reader's input; if the reader never opened it, it is released instead:
    a reader blocked opening it sees an empty stream, a later one no pipe.
    """

    def __init__(
        self, path: Path, *, finished: Callable[[], bool], lead: bytes, poll_ms: int
    ) -> None:
        self.gone = False
        self._path, self._finished, self._lead, self._poll_ms = path, finished, lead, poll_ms
        self._fd = -1
        self._poller = select.poll()

    def __enter__(self) -> PipeWriter:
        try:
            self._open()
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._close()

    def write(self, data: bytes) -> bool:
        """Write all of `data`, waiting for room; False once the reader has gone."""
        view = memoryview(data)
        while view and not self.gone:
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                self._wait_for_room()
            except BrokenPipeError:
                self.gone = True  # the reader closed its end
        return not self.gone

    def _open(self) -> None:
        while True:
            try:
                self._fd = os.open(self._path, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                    raise
            if self._finished():
                self.gone = True  # the server ended without opening the pipe
                return
            time.sleep(OPEN_POLL_SECONDS)
        widen_pipe(self._fd)
        self._poller.register(self._fd, select.POLLOUT)
        if self._lead and self.write(self._lead):
            self._wait_until_taken()

    def _wait_for_room(self) -> None:
        while not self._poller.poll(self._poll_ms):
            if self._finished():
                self.gone = True
                return
        # room, or no reader any more (POLLERR): the next write tells which

    def _wait_until_taken(self) -> None:
        """Until the reader has read everything written so far."""
        import fcntl  # POSIX only, like the pipe itself
        import termios

        unread = array.array("i", [0])
        while True:
            fcntl.ioctl(self._fd, termios.FIONREAD, unread)
            if not unread[0]:
                return
            reader_gone = any(flags & select.POLLERR for _, flags in self._poller.poll(0))
            if reader_gone or self._finished():
                self.gone = True
                return
            time.sleep(0.001)

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            return
        with contextlib.suppress(OSError):  # a reader blocked in open() wakes to an empty stream
            fd = os.open(self._path, os.O_RDWR | os.O_NONBLOCK)
            self._path.unlink()
            os.close(fd)
