"""`storesafe images snapshots`: the table, the JSON contract and the errors."""

from __future__ import annotations

import datetime as dt
import json

from common.errors import NotFound
from tests.support.cli import NOW, FakeStoreClient, invoke
from tests.support.sealed import new_site, seal_files


def _client() -> FakeStoreClient:
    site = new_site("shop-a")
    old = seal_files(site, {"a.jpg": b"a" * 5000}, NOW - dt.timedelta(days=1))
    new = seal_files(site, {"a.jpg": b"a" * 5000, "b.jpg": b"b" * 3000}, NOW)
    return FakeStoreClient(site, old, new)


def test_snapshots_table_newest_first() -> None:
    client = _client()
    result = invoke(client, "images", "snapshots", "shop-a")
    assert result.exit_code == 0, result.output
    new, old = client.snapshots
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["SNAPSHOT", "TAKEN", "FILES", "SIZE", "CHUNKS", "STORED"]
    assert lines[1].split()[:6] == [new.snapshot_id[:12], "2026-11-26", "22:00", "UTC", "2", "7.8"]
    assert lines[2].split()[:5] == [old.snapshot_id[:12], "2026-11-25", "22:00", "UTC", "1"]
    assert client.calls == [("list_snapshots", ("shop-a", "images", 20))]


def test_snapshots_json_has_stable_names() -> None:
    client = _client()
    result = invoke(client, "images", "snapshots", "shop-a", "--json", "--limit", "1")
    assert result.exit_code == 0
    (row,) = json.loads(result.stdout)
    new = client.snapshots[0]
    assert row == {
        "snapshot_id": new.snapshot_id,
        "kind": "images",
        "created_at": "2026-11-26T22:00:00Z",
        "committed_at": "2026-11-26T22:01:00Z",
        "files": 2,
        "size": 8000,
        "chunks": len(new.chunks),
        "stored_bytes": sum(len(b) for b in new.chunks.values()),
        "data_key_id": client.sealed_site.data_key_id,
    }


def test_no_snapshot_yet_is_said() -> None:
    client = FakeStoreClient(new_site("shop-a"))
    result = invoke(client, "images", "snapshots", "shop-a")
    assert (result.exit_code, result.stdout) == (
        0,
        "Site shop-a has no image snapshot in the off-site store yet.\n",
    )
    assert json.loads(invoke(client, "images", "snapshots", "shop-a", "--json").stdout) == []


def test_errors_are_one_sentence() -> None:
    client = FakeStoreClient(new_site("shop-a"))
    client.error = NotFound("no site named shop-x")
    result = invoke(client, "images", "snapshots", "shop-x")
    assert (result.exit_code, result.stderr) == (3, "error: no site named shop-x\n")
    result = invoke(client, "images", "snapshots", "bad name!")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    result = invoke(client, "images", "snapshots", "shop-a", "--limit", "0")
    assert (result.exit_code, result.stderr) == (
        2,
        "error: a limit of 0 is out of range: use 1 to 1000\n",
    )
