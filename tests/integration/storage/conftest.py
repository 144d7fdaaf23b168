"""Fixtures of the storage conformance suite: one store per test on each real backend.

The S3 servers start once per session on loopback (moto fast, from tests/conftest.py;
SeaweedFS the real distributed store); each test gets its own prefix in their bucket, or its own folder.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.storage import BlobStore, open_store
from tests.support.s3servers import S3Server, start_seaweedfs, use_test_credentials

BACKENDS = ["filesystem", "moto", "seaweedfs"]


@pytest.fixture(scope="session")
def seaweedfs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    use_test_credentials()
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh, empty store on each backend in turn."""
    if request.param == "filesystem":
        return str(tmp_path / "store")
    server: S3Server = request.getfixturevalue(f"{request.param}_server")
    return server.url(f"t-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[BlobStore]:
    """A fresh store that passed `check()`; closed after the test."""
    blob_store = open_store(store_url, tmp_path)
    asyncio.run(blob_store.check())
    try:
        yield blob_store
    finally:
        asyncio.run(blob_store.close())
