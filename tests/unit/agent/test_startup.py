"""A one-off image pass (`sync-now`, the benchmark's pass process) builds the image-sync
capability without loading the service's loop (runner, scheduler, outbox, status file),
and the `storesafe-agent` command line loads neither that loop nor the Firebird
capability until a command needs them. Checked in a fresh interpreter with `python -X
importtime`, which names every module it imported; no timings are compared."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import agent

ROOT = Path(agent.__file__).resolve().parents[1]
ONE_PASS = """
from agent.capability import Setup
from agent.configsync import ConfigStore
from agent.images.capability import ImageSync
from agent.transport.link import ServerLink
from agent.transport.store import StoreCalls
"""
SERVICE_ONLY = {"agent.runner", "agent.scheduler", "agent.facts", "agent.outbox", "agent.status"}
COMMAND_ONLY = {"agent.runner", "agent.scheduler", "agent.service", "agent.directives"}


def imported(code: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("import time:")]
    assert lines, proc.stderr[-2000:]
    return {ln.rsplit("|", 1)[1].strip() for ln in lines}


def test_an_image_pass_does_not_load_the_service_loop() -> None:
    modules = imported(ONE_PASS)
    assert "agent.images.sync" in modules  # the pass itself is loaded
    assert not SERVICE_ONLY & modules


def test_the_agent_command_line_loads_what_a_command_needs_in_the_command() -> None:
    modules = imported("from agent.main import app")
    assert "agent.images.capability" in modules  # sync-now's
    assert not COMMAND_ONLY & modules
    assert not {m for m in modules if m.startswith(("agent.firebird", "fdb"))}


def test_the_image_capability_still_schedules_its_task() -> None:
    modules = imported(
        ONE_PASS
        + """
import tempfile
from pathlib import Path
from common.clock import SystemClock
root = Path(tempfile.mkdtemp())
sync = ImageSync(Setup(config=ConfigStore(root), clock=SystemClock(), state_dir=root))
(task,) = sync.tasks()
assert task.name == "image-sync" and task.schedule_key == "images.schedule", task
"""
    )
    assert "agent.scheduler" in modules
