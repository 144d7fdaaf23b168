"""`scripts/demo` as the README tells a newcomer to run it, then the lines it says to paste.

Its own port and folder (STORESAFE_DEMO_PORT, STORESAFE_DEMO_DIR), so it runs beside
other servers; pytest's private tmp folder is one the Firebird server cannot reach,
which is the case of a clone under /root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.server import free_port

pytestmark = pytest.mark.firebird

REPO = Path(__file__).resolve().parents[2]


def test_the_demo_then_what_it_says_to_paste_work(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "STORESAFE_DEMO_DIR": str(tmp_path / "demo-data"),
        "STORESAFE_DEMO_PORT": str(free_port()),
    }
    for name in ("STORESAFE_SERVER", "STORESAFE_TOKEN", "STORESAFE_CA", "STORESAFE_STATE_DIR"):
        env.pop(name, None)
    demo = [str(REPO / "scripts" / "demo")]
    done = None
    try:
        done = subprocess.run(demo, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        assert re.search(r"^demo-shop +demo +ok ", done.stdout, re.M), done.stdout
        block = done.stdout.split("\nTry", 1)[1].split("\nStop:", 1)[0]
        pasted = "set -e\n" + "\n".join(block.splitlines()[1:])
        after = subprocess.run(
            ["bash", "-c", pasted], env=env, capture_output=True, text=True, timeout=120
        )
        assert after.returncode == 0, after.stdout + after.stderr
        assert re.search(r"^Status +ok$", after.stdout, re.M), after.stdout
        assert "STORESAFE OK - 1 site ok" in after.stdout
        assert re.search(r"^ running +yes", after.stdout, re.M), after.stdout
        assert after.stderr == ""
    finally:
        stopped = subprocess.run(
            [*demo, "stop"], env=env, capture_output=True, text=True, timeout=120
        )
        assert stopped.returncode == 0, stopped.stderr
        moved = re.search(r"backups go to (\S+)$", done.stdout if done else "", re.M)
        if moved:  # the shop database and backups, outside tmp_path
            shutil.rmtree(moved[1], ignore_errors=True)
