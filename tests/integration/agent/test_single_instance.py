"""One job per state dir and backup dir, across real processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent.configsync import ConfigStore
from agent.outbox import Outbox
from agent.settings import StateDir
from tests.support.agent import agent_cli
from tests.unit.agent.test_main import enrolled

HOLD_JOB_LOCK = """
import sys
from pathlib import Path
from agent.firebird.files import job_lock, prepare_spool
with job_lock(prepare_spool(Path(sys.argv[1]))):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_backup_now_beside_a_running_backup_is_refused_and_queues_nothing(
    tmp_path: Path,
) -> None:
    # `backup-now` runs beside the agent's service on purpose; a second backup job on
    # the same backup.dir at once (the schedule's, or another backup-now) is refused
    # before it touches Firebird, and is not reported as a failed backup.
    state = enrolled(tmp_path)
    backups = tmp_path / "backups"
    backups.mkdir()
    ConfigStore(state.root, path_check=lambda k, v: None).apply(
        1, {"firebird.database": "/srv/shop/DATA.FDB", "backup.dir": str(backups)}
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_JOB_LOCK, str(backups)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        done = agent_cli("backup-now", "--state-dir", str(state.root))
    finally:
        holder.communicate("")
    assert done.returncode == 5, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0] == (
        f"error: another backup job is running in {backups}; nothing was queued, "
        "try again when it has finished"
    )
    with Outbox(StateDir(state.root).outbox_path) as outbox:
        assert outbox.pending() == 0
