"""Processes that move MiB-sized buffers keep them for reuse (glibc on Linux)."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common import memory

ROOT = Path(__file__).resolve().parents[3]
# one upload's worth of MiB-sized buffers made and freed over and over, in two threads
WORKLOAD = """
import resource, sys, threading
from common import memory
tuned = memory.keep_large_buffers() if sys.argv[1] == "tune" else None
def work():
    for _ in range(50):
        held = [b"x" * (1 << 20) for _ in range(20)]
        del held
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
worker = threading.Thread(target=work)
worker.start()
worker.join()
work()
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str, **env: str) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", WORKLOAD, mode],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    tuned, faults = done.stdout.split()
    return tuned, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_large_buffers_are_reused_instead_of_faulted_in_again() -> None:
    tuned, with_it = page_faults("tune")
    untouched, without = page_faults("leave")
    assert (tuned, untouched) == ("True", "None")
    # 2,000 buffers of 1 MiB (256 pages each): new pages nearly every time without it
    assert without > 100_000
    assert with_it < without / 10


def test_an_operators_own_malloc_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1048576")
    assert memory.keep_large_buffers() is False


def test_the_agent_process_and_its_windows_service_tune_the_allocator(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`storesafe-agent run` sets the thresholds before anything else (here it then stops:
    the state dir is not enrolled); the Windows service's main does the same."""
    from typer.testing import CliRunner

    from agent import winservice
    from agent.main import app

    calls: list[str] = []
    monkeypatch.setattr(
        memory,
        "keep_large_buffers",
        lambda trim: calls.append("tuned") or trim == memory.AGENT_TRIM_THRESHOLD,
    )
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level  # both entry points set up logging
    try:
        done = CliRunner().invoke(app, ["run", "--state-dir", str(tmp_path / "state")])
        assert done.exit_code != 0 and calls == ["tuned"]
        winservice.default_main(asyncio.Event(), tmp_path / "svc").close()  # made, not run
        assert calls == ["tuned", "tuned"]
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers, root.level = handlers, level
