"""The status file: written atomically, read back, and "never" when missing or damaged."""

from __future__ import annotations

import stat
from pathlib import Path

from agent.status import CheckInStatus, StatusFile
from tests.support.agentfakes import T0


def test_round_trip(tmp_path: Path) -> None:
    status = CheckInStatus(
        last_attempt_at=T0,
        last_checkin_at=T0,
        last_result="ok",
        server_time=T0,
        checkin_interval_seconds=60.0,
        config_revision=3,
        desired_config_revision=4,
        last_delivery_at=T0,
    )
    file = StatusFile(tmp_path / "status.json")
    file.save(status)
    assert file.load() == status
    assert stat.S_IMODE(file.path.stat().st_mode) == 0o644


def test_missing_or_damaged_reads_as_never(tmp_path: Path) -> None:
    file = StatusFile(tmp_path / "status.json")
    assert file.load() == CheckInStatus()
    file.path.write_text("{half")
    assert file.load() == CheckInStatus()
    file.path.write_text('{"last_checkin_at": "yesterday"}')
    assert file.load() == CheckInStatus()


def test_a_failed_write_is_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    StatusFile(tmp_path / "file" / "status.json").save(CheckInStatus(last_result="ok"))
