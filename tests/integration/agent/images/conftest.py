"""Fixtures for the image scanner's tests: a real folder, a real index, a clock that only moves when told."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.images.index import INDEX_FILE, ImageIndex
from agent.images.scanner import Scanner
from tests.support.clock import FakeClock

OLD_NS = 1_600_000_000 * 10**9  # a settled file's mtime, long before any test writes


def put(path: Path, data: bytes = b"scan", *, old: bool = True) -> Path:
    """Write `path` (and its folders); `old` dates it back so any later write changes mtime."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if old:
        os.utime(path, ns=(OLD_NS, OLD_NS))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "Images"
    path.mkdir()
    return path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC))


@pytest.fixture
def index(tmp_path: Path) -> Iterator[ImageIndex]:
    state = tmp_path / "state"
    state.mkdir()
    with ImageIndex(state / INDEX_FILE) as idx:
        yield idx


@pytest.fixture
def scanner(folder: Path, index: ImageIndex, clock: FakeClock) -> Callable[..., Scanner]:
    def make(**kw: Any) -> Scanner:
        kw.setdefault("settle_seconds", 0)
        return Scanner(index, str(folder), clock=clock, **kw)

    return make
