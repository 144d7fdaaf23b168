"""The directive loop applies pushed config, runs commands once, and acknowledges both."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.backoff import Backoff
from agent.commands import CommandResult, CommandRunner
from agent.configsync import ConfigStore
from agent.directives import DirectiveLoop
from agent.domain.messages import ConfigPush, RemoteCommand, ServerGoingAway
from common.errors import Unauthenticated
from tests.support.agentfakes import DOWN, FakeLink
from tests.support.clock import VirtualClock


class Loop:
    def __init__(self, tmp_path: Path) -> None:
        self.link = FakeLink()
        self.clock = VirtualClock()
        self.ran: list[str] = []
        self.store = ConfigStore(tmp_path, path_check=lambda key, value: None)

        async def backup() -> CommandResult:
            self.ran.append("backup")
            return CommandResult("succeeded", "backup taken")

        self.loop = DirectiveLoop(
            connect=lambda: self.link,
            config=self.store,
            commands=CommandRunner(tmp_path, {"backup-now": backup}),
            site="shop-1",
            backoff=Backoff(base=1.0, cap=8.0, rand=lambda: 1.0),
            refused_retry=300.0,
            reopen_delay=0.5,
            rand=lambda: 0.25,
            timer=self.clock,
        )

    def once(self) -> float:
        return asyncio.run(self.loop.watch_once())


def test_a_pushed_revision_is_applied_and_acknowledged(tmp_path: Path) -> None:
    t = Loop(tmp_path)
    t.link.directives = [ConfigPush(revision=5, values={"backup.keep_daily": 9})]
    assert t.once() == 0.5
    assert t.store.revision == 5
    assert t.link.acks == [("config", 5, True, "")]
    t.link.directives = []
    t.once()
    assert t.link.watches == [0, 5], "the stream reopens at the running revision"


def test_a_bad_revision_is_refused_with_the_reason_and_the_old_one_kept(tmp_path: Path) -> None:
    t = Loop(tmp_path)
    t.link.directives = [ConfigPush(revision=6, values={"backup.schedule": "every day"})]
    t.once()
    (kind, revision, applied, error) = t.link.acks[0]
    assert (kind, revision, applied) == ("config", 6, False)
    assert "backup.schedule" in error
    assert t.store.revision == 0


def test_commands_run_once_and_every_delivery_is_acknowledged(tmp_path: Path) -> None:
    t = Loop(tmp_path)
    again = RemoteCommand(id="c1", kind="backup-now")
    t.link.directives = [again, again, RemoteCommand(id="c2", kind="")]
    t.once()
    assert t.ran == ["backup"]
    assert t.link.acks == [
        ("command", "c1", "succeeded", "backup taken"),
        ("command", "c1", "succeeded", "backup taken"),
        ("command", "c2", "rejected", "this agent does not know the command ''"),
    ]


def test_outages_back_off_and_a_refusal_waits_long(tmp_path: Path) -> None:
    t = Loop(tmp_path)
    t.link.fault = DOWN
    assert [t.once(), t.once(), t.once()] == [1.0, 2.0, 4.0]
    t.link.fault = Unauthenticated("revoked")
    assert t.once() == 300.0
    assert t.link.closed == 1, "reconnects with a freshly read credential"
    t.link.fault = None
    t.link.directives = [RemoteCommand(id="c9", kind="backup-now")]
    assert t.once() == 0.5
    t.link.fault = DOWN
    assert t.once() == 1.0, "a working stream resets the backoff"


def test_as_a_runner_job_it_stops_when_cancelled(tmp_path: Path) -> None:
    t = Loop(tmp_path)

    async def go() -> None:
        task = asyncio.create_task(t.loop(sink=None))  # type: ignore[arg-type]
        await t.clock.run_until(lambda: len(t.link.watches) >= 2)  # reopened after its delay
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(go())
    assert t.link.closed == 1


def test_a_goodbye_spreads_the_return_over_the_servers_window(tmp_path: Path) -> None:
    t = Loop(tmp_path)
    t.link.directives = [
        ServerGoingAway(within_seconds=40),
        ConfigPush(revision=5, values={"backup.keep_daily": 9}),  # not read: the stream ends
    ]
    assert t.once() == 10.0  # 40 s x the agent's random draw (0.25 here)
    assert t.store.revision == 0 and t.link.acks == []
    t.link.fault = DOWN  # still restarting: retries stay spread over the window
    assert [t.once() for _ in range(3)] == [10.0, 10.0, 10.0]
    t.link.fault = None  # back: a normal stream end clears the window
    t.link.directives = []
    assert t.once() == 0.5
    t.link.fault = DOWN
    assert t.once() == 1.0, "without a goodbye, the backoff applies again"
