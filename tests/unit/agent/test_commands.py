"""Remote commands run once per id, even when delivered again after a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.commands import CommandResult, CommandRunner


def test_each_command_id_runs_once_across_restarts(tmp_path: Path) -> None:
    calls: list[str] = []

    async def backup() -> CommandResult:
        calls.append("backup")
        return CommandResult("succeeded", "backup done")

    async def body() -> None:
        runner = CommandRunner(tmp_path, {"backup-now": backup})
        first = await runner.run("c1", "backup-now")
        again = await runner.run("c1", "backup-now")
        assert first == again == CommandResult("succeeded", "backup done")
        restarted = CommandRunner(tmp_path, {"backup-now": backup})
        assert await restarted.run("c1", "backup-now") == first
        await restarted.run("c2", "backup-now")

    asyncio.run(body())
    assert calls == ["backup", "backup"]


def test_unknown_kinds_are_rejected_and_failures_reported(tmp_path: Path) -> None:
    async def broken() -> CommandResult:
        raise RuntimeError("disk on fire")

    async def body() -> None:
        runner = CommandRunner(tmp_path, {"sync-now": broken})
        rejected = await runner.run("x", "format-disk")
        assert rejected.outcome == "rejected"
        failed = await runner.run("y", "sync-now")
        assert failed == CommandResult("failed", "RuntimeError: disk on fire")

    asyncio.run(body())


def test_a_damaged_log_starts_fresh(tmp_path: Path) -> None:
    (tmp_path / "commands.json").write_text("{not json")
    runner = CommandRunner(tmp_path, {})
    assert runner.seen("anything") is None
