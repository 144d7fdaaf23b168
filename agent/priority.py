"""Lower CPU and IO priority for the agent's own heavy work, so the shop's work goes first.

Shared by the capabilities: every Firebird job (backup with its verification,
online validation, the re-check of kept backups) and every image-sync pass runs
in `in_background`: a thread of its own at nice
10 and the lowest best-effort IO priority on Linux, Windows' background mode
(low CPU, IO and memory priority) on Windows; threads it starts inherit that.
The agent's other threads (check-in, the config stream) keep their priority.
The restore and validation work done by the Firebird server itself runs in the
server's process, which the agent leaves alone: it serves the shop too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psutil

T = TypeVar("T")

BACKGROUND_NICE = 10
BACKGROUND_IO_LEVEL = 7  # best-effort class, lowest of 0..7
_WINDOWS_BACKGROUND_BEGIN = 0x00010000  # THREAD_MODE_BACKGROUND_BEGIN


async def in_background(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run the job `fn(*args, **kwargs)` in a thread of low CPU and IO priority; await it."""
    job = functools.partial(fn, *args, **kwargs)
    return await asyncio.to_thread(run_niced, job, io=True)


def run_niced(
    fn: Callable[[], T], *, nice: int = BACKGROUND_NICE, idle: bool = False, io: bool = False
) -> T:
    """Run `fn` in a thread of lower CPU priority, so the shop's own work goes first.

    `idle=True` asks for SCHED_IDLE: the thread runs only on CPU time nothing
    else wants (a waking shop process preempts it at once, where a niced
    thread can hold the core for a time slice); `nice` is the fallback. Linux
    applies both per thread; the thread ends with `fn`, so the agent's other
    threads keep their priority. `io=True` also lowers the thread's IO priority
    (Linux: best-effort level 7; Windows: background mode, CPU and IO). Elsewhere
    `fn` just runs.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        if sys.platform == "linux":
            _lower_this_thread(nice, idle=idle)
            if io:
                _lower_this_thread_io()
        elif sys.platform == "win32" and io:
            _windows_background()
        try:
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            error.append(exc)

    worker = threading.Thread(target=body, name="storesafe-compress")
    worker.start()
    worker.join()
    if error:
        raise error[0]
    return result[0]


def leave_idle(nice: int = BACKGROUND_NICE) -> None:
    """Move the calling thread from idle priority back to normal scheduling at `nice`.

    For a backlog that is now pure waiting time. Linux only; where the OS
    refuses (an unprivileged process under RLIMIT_NICE), the thread stays idle.
    """
    if sys.platform == "linux" and os.sched_getscheduler(0) == os.SCHED_IDLE:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


def _lower_this_thread(nice: int, *, idle: bool) -> None:
    if idle:
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # 0: this thread
            return
        except (OSError, AttributeError):
            pass  # e.g. a container that forbids it: niceness still helps
    if nice:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


def _lower_this_thread_io() -> None:
    # ioprio_set on a thread id applies to that thread only (Linux).
    with contextlib.suppress(psutil.Error, OSError):
        psutil.Process(threading.get_native_id()).ionice(
            psutil.IOPRIO_CLASS_BE, BACKGROUND_IO_LEVEL
        )


def _windows_background() -> None:  # pragma: no cover - Windows only
    import ctypes

    kernel32: Any = ctypes.windll.kernel32  # type: ignore[attr-defined]
    kernel32.SetThreadPriority(kernel32.GetCurrentThread(), _WINDOWS_BACKGROUND_BEGIN)
