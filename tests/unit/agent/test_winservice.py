"""The Windows service logic maps start and stop onto the agent loop (pywin32 not needed)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
from pathlib import Path

from agent.winservice import ServiceController
from common.errors import FailedPrecondition
from tests.support.agentfakes import FakeServiceHost


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


def test_the_service_refuses_a_state_dir_another_agent_holds(tmp_path: Path) -> None:
    # A second, real process holds the single-instance lock, like `storesafe-agent run`.
    from agent.logfile import LOG_FILE
    from agent.winservice import main_for
    from tests.unit.agent.test_main import enrolled

    state = enrolled(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from agent.lock import StateLock; lock = StateLock("
            f"__import__('pathlib').Path({str(state.root)!r})); lock.acquire(); "
            "print('locked', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        host = FakeServiceHost()
        assert ServiceController(host, main_for(str(state.root))).run() == 1
    finally:
        for handler in root.handlers:
            if handler not in saved[0]:
                handler.close()
        root.handlers, root.level = saved
        holder.communicate("")
    [error] = host.errors
    assert "already running with the state dir" in error
    assert f"(pid {holder.pid})" in error
    assert (state.root / LOG_FILE).exists()  # the service logs into its own state dir
