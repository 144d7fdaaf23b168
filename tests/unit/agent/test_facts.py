"""Host facts: name, OS, disk space per watched volume, and the injected clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import facts
from common.version import VERSION
from tests.support.agentfakes import T0
from tests.support.clock import FakeClock


def test_collect_reports_each_volume_and_the_injected_clock(tmp_path: Path) -> None:
    got = facts.collect(FakeClock(T0), {"state": tmp_path, "backup": tmp_path / "not" / "yet"})
    assert got.agent_time == T0
    assert got.agent_version == VERSION
    assert got.hostname and got.os
    assert [d.label for d in got.disks] == ["state", "backup"]
    backup = got.disks[1]
    assert backup.path == str(tmp_path / "not" / "yet")  # measured on its nearest parent
    assert 0 < backup.free_bytes <= backup.total_bytes


def test_an_unreadable_volume_is_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(path: str) -> object:
        raise OSError("device gone")

    monkeypatch.setattr(facts.psutil, "disk_usage", boom)
    assert facts.disk_usage("data", tmp_path) is None


def test_os_string_names_the_system() -> None:
    assert facts.os_string().split()[0] in {"Linux", "Windows", "Darwin"}
