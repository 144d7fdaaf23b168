"""The agent's asyncio runner drops grpc.aio's spurious wake-up error and nothing else."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from agent.transport import aio


class PollerCompletionQueue:
    """Stands in for grpc's Cython class of that name: its reader lost the wake-up byte."""

    def _handle_events(self, loop: object) -> None:
        raise BlockingIOError(11, "Resource temporarily unavailable")


def _raise_in_callback(exc: object) -> None:
    assert isinstance(exc, BaseException)
    raise exc


async def _callbacks(*callbacks: tuple[Callable[..., None], object]) -> str:
    """Schedule each (callback, argument) as grpc schedules its reader: a bound method."""
    loop = asyncio.get_running_loop()
    for callback, argument in callbacks:
        loop.call_soon(callback, argument)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return "done"


def test_the_spurious_wakeup_is_dropped_and_the_work_completes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = PollerCompletionQueue()
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        result = aio.run(_callbacks((queue._handle_events, None)))
    assert result == "done"
    assert "PollerCompletionQueue" not in caplog.text
    assert "BlockingIOError" not in caplog.text


def test_other_callback_errors_are_still_reported(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        aio.run(
            _callbacks(
                (_raise_in_callback, BlockingIOError(11, "a socket of ours")),
                (_raise_in_callback, ValueError("a real bug")),
            )
        )
    assert "a socket of ours" in caplog.text
    assert "a real bug" in caplog.text


def test_only_a_blocking_io_error_from_the_poller_counts_as_spurious() -> None:
    handle = "<Handle PollerCompletionQueue._handle_events(<_UnixSelectorEventLoop>)()>"
    assert aio.is_spurious_wakeup({"exception": BlockingIOError(), "handle": handle})
    assert not aio.is_spurious_wakeup({"exception": OSError(), "handle": handle})
    assert not aio.is_spurious_wakeup({"exception": BlockingIOError(), "handle": "<Handle f()>"})
    assert not aio.is_spurious_wakeup({"message": handle})
