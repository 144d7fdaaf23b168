"""One agent loop per state dir; `status` can tell whether one is running."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.domain.errors import AlreadyRunning
from agent.lock import StateLock


def test_a_second_loop_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    with StateLock(tmp_path):
        other = StateLock(tmp_path)
        assert other.is_held_elsewhere()
        assert other.owner_pid() == os.getpid()
        with pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}"):
            other.acquire()
    assert not StateLock(tmp_path).is_held_elsewhere()


def test_the_lock_can_be_taken_again_after_release(tmp_path: Path) -> None:
    lock = StateLock(tmp_path)
    lock.acquire()
    lock.release()
    lock.acquire()
    lock.release()
    assert StateLock(tmp_path).owner_pid() is None


def test_no_lock_file_means_not_running(tmp_path: Path) -> None:
    assert not StateLock(tmp_path).is_held_elsewhere()
