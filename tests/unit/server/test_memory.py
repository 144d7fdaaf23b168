"""The serving process leaves its start-up objects out of garbage collection (its allocator
tuning is common.memory's, tested in tests/unit/common/test_memory.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from server import memory

ROOT = Path(__file__).resolve().parents[3]


def test_the_server_tunes_the_allocator_as_common_memory_does() -> None:
    from common.memory import keep_large_buffers

    assert memory.keep_large_buffers is keep_large_buffers


FREEZE = """
import gc
import server.main
frozen = __import__("server.memory").memory.freeze_startup_objects()
print(frozen, len(gc.get_objects()))
"""


def test_the_objects_made_at_start_up_are_left_out_of_collections() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FREEZE],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    frozen, still_collected = (int(part) for part in done.stdout.split())
    assert frozen > 50_000  # the imports of a serving process
    assert still_collected < 1_000
