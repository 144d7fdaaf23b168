"""The Session stream's merge of directives and the agent's acks (AgentTraffic)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from server.services.agents import _until_failed


async def _nothing() -> AsyncGenerator[str, None]:
    return
    yield "never"


async def _directives(*items: str) -> AsyncGenerator[str, None]:
    for item in items:
        yield item


async def _fails() -> None:
    raise RuntimeError("the ack stream broke")


def test_directives_pass_through_until_the_source_ends() -> None:
    async def body() -> list[str]:
        acks = asyncio.ensure_future(asyncio.sleep(10))
        try:
            return [d async for d in _until_failed(_directives("a", "b"), acks)]
        finally:
            acks.cancel()

    assert asyncio.run(body()) == ["a", "b"]


def test_a_failure_ending_with_the_source_is_raised_and_nothing_is_left_unseen() -> None:
    """Both end in the same turn of the loop (a server stop): the acks' error is raised,
    and the source's end is seen, not logged later as 'Task exception was never
    retrieved'."""
    unseen: list[dict[str, Any]] = []

    async def body() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: unseen.append(ctx))
        acks = asyncio.ensure_future(_fails())
        with pytest.raises(RuntimeError, match="ack stream broke"):
            async for _ in _until_failed(_nothing(), acks):
                pass
        gc.collect()
        await asyncio.sleep(0)

    asyncio.run(body())
    gc.collect()
    assert unseen == []


def test_a_failure_while_a_directive_is_being_sent_is_raised() -> None:
    """The acks fail while the consumer holds a directive (the server is writing it): the
    next step raises their error instead of waiting for another directive forever."""

    async def body() -> list[str]:
        sent = asyncio.Event()

        async def fails_once_sent() -> None:
            await sent.wait()
            await _fails()

        acks = asyncio.ensure_future(fails_once_sent())
        source = _directives("a")
        got: list[str] = []

        async def forever() -> AsyncGenerator[str, None]:
            async for item in source:
                yield item
            await asyncio.Event().wait()  # an open stream: no more directives, no end
            yield "never"

        with pytest.raises(RuntimeError, match="ack stream broke"):
            async for item in _until_failed(forever(), acks):
                got.append(item)
                sent.set()
                await asyncio.wait({acks})  # the acks fail meanwhile

        return got

    assert asyncio.run(asyncio.wait_for(body(), 10)) == ["a"]
