"""Fixtures shared by all tests: real servers on loopback, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.s3servers import S3Server, start_moto, use_test_credentials
from tests.support.server import PG_ENV, ServerHandle, fresh_pg_database, start_server


def _backends() -> list[object]:
    return ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=_backends())
def db_backend(request: pytest.FixtureRequest) -> str:
    """Run the test once on SQLite and once on PostgreSQL."""
    backend: str = request.param
    if backend == "postgres" and not os.environ.get(PG_ENV):
        if os.environ.get("CI"):  # in CI a missing PostgreSQL is a failure, not a skip
            pytest.fail(f"CI runs the PostgreSQL tests: set {PG_ENV}")
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (set by .ci/run and scripts/test)")
    return backend


@pytest.fixture
def db_url(db_backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL of the selected backend."""
    if db_backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    with fresh_pg_database() as url:
        yield url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database, for what only PostgreSQL can show (a dropped connection)."""
    if not os.environ.get(PG_ENV):
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the PostgreSQL tests: set {PG_ENV}")
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (set by .ci/run and scripts/test)")
    with fresh_pg_database() as url:
        yield url


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerHandle]:
    """A fresh server on SQLite for one test."""
    handle = start_server(tmp_path)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """One server for tests that only add their own uniquely named sites."""
    handle = start_server(tmp_path_factory.mktemp("shared"))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server on loopback, once per session (the storage suite and the store's
    garbage collection use it; each test takes its own prefix)."""
    use_test_credentials()
    server = start_moto(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a thread of its own, as the agent's is while a pass runs
    in another (agent.offsite.uploader.LoopStore bridges the two)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()
