"""Fixtures for CLI unit tests."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.support.cli import NOW, FakeAdminClient, site


@pytest.fixture
def fake() -> FakeAdminClient:
    """A client with three sites: ok, warning, offline."""
    return FakeAdminClient(
        [
            site("shop-a"),
            site("shop-b", "warning", problems=("disk nearly full",)),
            site("shop-c", "offline", last_seen_at=NOW - dt.timedelta(days=2)),
        ]
    )
