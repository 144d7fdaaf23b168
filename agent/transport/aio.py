"""Running the agent's asyncio work in one place that knows grpc.aio's event-loop quirks.

grpc.aio wakes every event loop that ever registered its completion-queue socket;
when a process has run more than one loop (a local `backup-now` backs up in one and
reports in another; a test process runs many), a loop that loses the race for the
wake-up byte raises BlockingIOError from `PollerCompletionQueue._handle_events`.
The call is unaffected (grpc/grpc#25364), but asyncio's default handler prints a
traceback on stderr, where a technician reads it as a crash. `run` drops exactly
that report and passes every other one to asyncio's default handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on a loop that ignores grpc.aio's spurious wake-up error."""
    with asyncio.Runner() as runner:
        runner.get_loop().set_exception_handler(ignore_spurious_wakeups)
        return runner.run(main)


def ignore_spurious_wakeups(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """An asyncio exception handler: drop grpc.aio's BlockingIOError, report the rest."""
    if is_spurious_wakeup(context):
        return
    loop.default_exception_handler(context)


def is_spurious_wakeup(context: dict[str, Any]) -> bool:
    """True for the BlockingIOError that grpc's completion-queue reader raises on a
    loop that lost the wake-up byte to another loop, or its RuntimeError when it hands an
    event to an earlier loop already closed (same grpc bug), and for nothing else."""
    exc = context.get("exception")
    closed = isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"
    if not (isinstance(exc, BlockingIOError) or closed):
        return False
    where = f"{context.get('handle', '')!r} {context.get('message', '')}"
    return "PollerCompletionQueue" in where
