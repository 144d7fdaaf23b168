"""`scripts/demo` as the README tells a newcomer to run it, then the lines it says to paste,
then the image restore it shows (one file of the demo image folder, bytes and mtime).

Its own port and folder (STORESAFE_DEMO_PORT, STORESAFE_DEMO_DIR), so it runs beside
other servers; pytest's private tmp folder is one the Firebird server cannot reach,
which is the case of a clone under /root.
"""

from __future__ import annotations

import json
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
        restore_one_image(done.stdout, env, tmp_path)
    finally:
        stopped = subprocess.run(
            [*demo, "stop"], env=env, capture_output=True, text=True, timeout=120
        )
        assert stopped.returncode == 0, stopped.stderr
        moved = re.search(r"backups go to (\S+)$", done.stdout if done else "", re.M)
        if moved:  # the shop database and backups, outside tmp_path
            shutil.rmtree(moved[1], ignore_errors=True)


def restore_one_image(shown: str, env: dict[str, str], tmp_path: Path) -> None:
    """The demo synced its image folder: a snapshot exists, and the restore the demo shows
    gives the file's bytes and mtime back."""
    exports = re.search(r"^  export (.+)$", shown, re.M)
    assert exports, shown
    cli_env = {**env, **dict(pair.split("=", 1) for pair in exports[1].split())}
    storesafe = str(REPO / ".venv" / "bin" / "storesafe")
    listed = subprocess.run(
        [storesafe, "images", "snapshots", "demo-shop", "--json"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    [snapshot] = json.loads(listed.stdout)
    folder = tmp_path / "demo-data" / "images"
    assert snapshot["files"] == sum(1 for p in folder.rglob("*") if p.is_file()) >= 24
    hint = re.search(r"^  storesafe images restore (.+) --to /tmp/restored (.+)$", shown, re.M)
    assert hint, shown
    to = tmp_path / "restored"
    restored = subprocess.run(
        [storesafe, "images", "restore", *hint[1].split(), "--to", str(to), *hint[2].split()],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert restored.returncode == 0, restored.stdout + restored.stderr
    name = hint[1].split("--path ", 1)[1]
    original, copy = folder / name, to / name
    assert copy.read_bytes() == original.read_bytes()
    assert copy.stat().st_mtime_ns == original.stat().st_mtime_ns
    assert [p for p in to.rglob("*") if p.is_file()] == [copy]
