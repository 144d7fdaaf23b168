"""The bridge from the scan's worker thread to the store calls on the agent's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from agent.offsite.uploader import LoopStore
from common.errors import Unavailable
from tests.support.offsitestore import AsyncMemoryStore, MemoryStore


class Hanging(AsyncMemoryStore):
    async def missing_chunks(self, ids: Sequence[str]) -> list[str]:
        await asyncio.Event().wait()  # never answers
        return []


def test_calls_run_on_the_loop_and_return_their_answer(loop: asyncio.AbstractEventLoop) -> None:
    store = MemoryStore(chunks={"a" * 64: b"x"})
    bridge = LoopStore(AsyncMemoryStore(store), loop)
    assert bridge.missing(["a" * 64, "b" * 64]) == ["b" * 64]


def test_a_call_that_never_answers_is_unavailable_not_a_hang(
    loop: asyncio.AbstractEventLoop,
) -> None:
    bridge = LoopStore(Hanging(MemoryStore()), loop, wait=0.05)
    with pytest.raises(Unavailable, match="did not answer a store call"):
        bridge.missing(["a" * 64])


def test_a_closed_loop_means_the_agent_is_stopping() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    bridge = LoopStore(AsyncMemoryStore(MemoryStore()), loop)
    with pytest.raises(Unavailable, match="the agent is stopping"):
        bridge.missing(["a" * 64])
