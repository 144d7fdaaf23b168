"""Fixtures for the HTTP edge: a fresh server with --http-listen per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.web import WebServer, start_web_server


@pytest.fixture
def web(tmp_path: Path) -> Iterator[WebServer]:
    server = start_web_server(tmp_path)
    try:
        yield server
    finally:
        server.handle.stop()
