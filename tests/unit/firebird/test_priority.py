"""Jobs run at low CPU and IO priority, in their own thread, as Linux reports it."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent.configsync import ConfigStore
from agent.domain.reports import BackupDetails, RunKind, ValidationDetails
from agent.firebird import capability
from agent.firebird.capability import FirebirdTasks
from agent.firebird.outcome import JobOutcome
from agent.priority import BACKGROUND_IO_LEVEL, BACKGROUND_NICE, in_background
from tests.support.clock import FakeClock

T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)


def thread_priority() -> dict[str, Any]:
    """This thread's nice (field 19 of /proc/thread-self/stat) and IO priority (psutil)."""
    stat = Path("/proc/thread-self/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # fields from 3 (state) on
    io = psutil.Process(threading.get_native_id()).ionice()
    return {
        "tid": threading.get_native_id(),
        "nice": int(fields[19 - 3]),
        "ioclass": io.ioclass,
        "iolevel": io.value,
    }


def test_in_background_lowers_cpu_and_io_priority_of_the_job_thread_only() -> None:
    before = thread_priority()
    seen = asyncio.run(in_background(thread_priority))
    assert seen["tid"] != before["tid"]
    assert seen["nice"] >= BACKGROUND_NICE
    assert (seen["ioclass"], seen["iolevel"]) == (psutil.IOPRIO_CLASS_BE, BACKGROUND_IO_LEVEL)
    assert thread_priority() == before  # the caller keeps its priority


def test_threads_a_job_starts_inherit_its_priority() -> None:
    def job() -> dict[str, Any]:
        out: list[dict[str, Any]] = []
        worker = threading.Thread(target=lambda: out.append(thread_priority()))
        worker.start()
        worker.join()
        return out[0]

    seen = asyncio.run(in_background(job))
    assert seen["nice"] >= BACKGROUND_NICE
    assert (seen["ioclass"], seen["iolevel"]) == (psutil.IOPRIO_CLASS_BE, BACKGROUND_IO_LEVEL)


def test_errors_of_a_background_job_reach_the_caller() -> None:
    def fail() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        asyncio.run(in_background(fail))


def test_every_firebird_job_runs_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real job functions need Firebird; a probe in their place shows where they run.
    seen: dict[str, dict[str, Any]] = {}

    def probe(kind: RunKind, details: Any) -> Any:
        def job(*args: Any, **kwargs: Any) -> JobOutcome:
            seen[kind.value] = thread_priority()
            return JobOutcome(kind=kind, started_at=T0, finished_at=T0, details=details)

        return job

    monkeypatch.setattr(capability, "run_backup_job", probe(RunKind.BACKUP, BackupDetails()))
    monkeypatch.setattr(
        capability, "run_validation_job", probe(RunKind.VALIDATION, ValidationDetails())
    )
    monkeypatch.setattr(capability, "run_recheck_job", probe(RunKind.FILE_CHECK, BackupDetails()))
    resume = probe(RunKind.BACKUP, BackupDetails())

    def pending(*args: Any, **kwargs: Any) -> list[JobOutcome]:
        seen["resume"] = thread_priority()
        return [resume()]

    monkeypatch.setattr(capability, "run_pending_verifications", pending)
    store = ConfigStore(tmp_path, path_check=lambda k, v: None)
    store.apply(1, {"firebird.database": "/db/shop.fdb", "backup.dir": str(tmp_path / "b")})
    tasks = FirebirdTasks(store, FakeClock(T0))
    caller = thread_priority()

    async def body() -> None:
        await tasks.backup("local")
        await tasks.validate("schedule")
        await tasks.recheck("schedule")
        await tasks.resume()

    asyncio.run(body())
    assert set(seen) == {"backup", "validation", RunKind.FILE_CHECK.value, "resume"}
    for kind, prio in seen.items():
        assert prio["nice"] >= BACKGROUND_NICE, kind
        assert (prio["ioclass"], prio["iolevel"]) == (
            psutil.IOPRIO_CLASS_BE,
            BACKGROUND_IO_LEVEL,
        ), kind
    assert thread_priority() == caller
    assert os.getpriority(os.PRIO_PROCESS, 0) == caller["nice"]
