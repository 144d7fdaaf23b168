"""Lower CPU priority for the agent's own heavy work, so the shop's work goes first."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

BACKGROUND_NICE = 10


def run_niced(fn: Callable[[], T], *, nice: int = BACKGROUND_NICE, idle: bool = False) -> T:
    """Run `fn` in a thread of lower CPU priority, so the shop's own work goes first.

    `idle=True` asks for SCHED_IDLE: the thread runs only on CPU time nothing
    else wants (a waking shop process preempts it at once, where a niced
    thread can hold the core for a time slice); `nice` is the fallback. Linux
    applies both per thread; the thread ends with `fn`, so the agent's other
    threads keep their priority. Elsewhere `fn` just runs.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        if sys.platform == "linux":
            _lower_this_thread(nice, idle=idle)
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
