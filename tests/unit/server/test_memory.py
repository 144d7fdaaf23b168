"""The serving process keeps large freed buffers for reuse (glibc on Linux) and leaves
its start-up objects out of garbage collection."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from server import memory

ROOT = Path(__file__).resolve().parents[3]
# one upload's worth of MiB-sized buffers made and freed over and over, in two threads
WORKLOAD = """
import resource, sys, threading
from server import memory
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
