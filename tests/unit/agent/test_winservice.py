"""The Windows service logic maps start and stop onto the agent loop (pywin32 not needed)."""

from __future__ import annotations

import asyncio
import sys
import threading

from agent.winservice import ServiceController
from common.errors import FailedPrecondition
from tests.unit.agent.fakes import FakeServiceHost


def test_start_runs_the_loop_and_stop_ends_it_from_another_thread() -> None:
    host = FakeServiceHost()
    started = threading.Event()
    stopped_cleanly: list[bool] = []

    async def main(stop: asyncio.Event) -> None:
        started.set()
        await stop.wait()
        stopped_cleanly.append(True)

    controller = ServiceController(host, main)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(controller.run()))
    thread.start()
    assert started.wait(5)
    controller.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert result == [0]
    assert stopped_cleanly == [True]
    assert host.states == ["start-pending", "running", "stop-pending", "stopped"]


def test_a_stop_before_the_loop_started_is_not_lost() -> None:
    host = FakeServiceHost()
    ran: list[bool] = []

    async def main(stop: asyncio.Event) -> None:
        await asyncio.wait_for(stop.wait(), 5)
        ran.append(True)

    controller = ServiceController(host, main)
    controller.stop()
    assert controller.run() == 0
    assert ran == [True]


def test_an_expected_failure_goes_to_the_event_log_and_exits_non_zero() -> None:
    host = FakeServiceHost()

    async def main(stop: asyncio.Event) -> None:
        raise FailedPrecondition("this agent is not enrolled")

    assert ServiceController(host, main).run() == 1
    assert host.errors == ["StoreSafe agent stopped: this agent is not enrolled"]
    assert host.states[-1] == "stopped"


def test_a_crash_is_reported_too() -> None:
    host = FakeServiceHost()

    async def main(stop: asyncio.Event) -> None:
        raise RuntimeError("bug")

    assert ServiceController(host, main).run() == 1
    assert "crashed" in host.errors[0]


def test_importing_the_wrapper_does_not_import_pywin32() -> None:
    assert "win32serviceutil" not in sys.modules
    assert "servicemanager" not in sys.modules
