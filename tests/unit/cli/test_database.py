"""`restore`, `drill` and `verify-store` without a server: bad input, rendering, exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.humanize import run_summary
from cli.models import Run, StoreCheckUpdate
from tests.support.cli import FakeAdminClient, backup_run, invoke, site

CHUNK = "ab" * 32
SNAPSHOT = "cd" * 32


class StoreChecker(FakeAdminClient):
    """Streams the given store-check updates, as VerifyStore would."""

    def __init__(self, updates: list[StoreCheckUpdate]) -> None:
        super().__init__([site("shop-a"), site("shop-b")])
        self.updates = updates

    def verify_store(
        self, site: str = "", sample_percent: float = 100.0
    ) -> Iterator[StoreCheckUpdate]:
        self._seen("verify_store", site, sample_percent)
        yield from self.updates


def _check(site_name: str, *, damaged: list[str] = (), missing: list[str] = ()) -> Run:  # type: ignore[assignment]
    return backup_run(
        id=f"check-{site_name}",
        site=site_name,
        kind="store-check",
        details={
            "sample_percent": 10.0,
            "chunks_checked": 120,
            "bytes_checked": 4096 * 120,
            "damaged_chunks": list(damaged),
            "missing_chunks": list(missing),
            "damaged_count": len(damaged),
            "missing_count": len(missing),
            "broken_snapshots": [SNAPSHOT] if damaged or missing else [],
            "broken_backup_runs": ["run-7"] if damaged or missing else [],
        },
    )


def _updates() -> list[StoreCheckUpdate]:
    return [
        StoreCheckUpdate("shop-a", 60, 120, 4096 * 60),
        StoreCheckUpdate("shop-a", 120, 120, 4096 * 120, _check("shop-a")),
        StoreCheckUpdate("shop-b", 120, 120, 4096 * 120, _check("shop-b", missing=[CHUNK])),
    ]


def test_verify_store_names_what_is_missing_and_what_it_breaks() -> None:
    client = StoreChecker(_updates())
    result = invoke(client, "verify-store", "--sample", "10")
    assert result.exit_code == 2, result.output
    assert client.calls == [("verify_store", ("", 10.0))]
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["SITE", "RESULT", "CHUNKS", "BYTES", "SAMPLE", "DAMAGED", "MISSING"]
    assert lines[1].split()[:3] == ["shop-a", "clean", "120"]
    assert lines[2].split()[:3] == ["shop-b", "DAMAGED", "120"]
    assert f"shop-b: missing chunk {CHUNK}" in lines
    assert f"shop-b: it breaks 1 snapshot ({SNAPSHOT[:12]}) and 1 backup run (run-7)" in lines
    assert lines[-1] == "2 sites checked: 1 clean, 1 damaged."


def test_verify_store_json_and_a_clean_store_exit_0() -> None:
    client = StoreChecker(_updates()[:2])
    result = invoke(client, "verify-store", "--site", "shop-a", "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["site"] == "shop-a" and row["damaged"] is False
    assert (row["chunks_checked"], row["sample_percent"], row["missing_chunks"]) == (120, 10.0, [])
    assert client.calls == [("verify_store", ("shop-a", 100.0))]


@pytest.mark.parametrize("sample", ["0", "-5", "100.5", "nan"])
def test_verify_store_refuses_a_sample_that_is_not_a_share(sample: str) -> None:
    client = StoreChecker([])
    result = invoke(client, "verify-store", "--sample", sample)
    assert result.exit_code == 2
    assert "is not a percentage above 0 and up to 100" in result.stderr
    assert client.calls == []


def test_run_summaries_of_drills_store_checks_and_uploads() -> None:
    drill = backup_run(
        kind="drill",
        details={
            "backup_run_id": "run-7",
            "backup_bytes": 2 * 1024 * 1024,
            "checksum_ok": True,
            "restored": True,
            "validation_errors": 0,
            "table_counts": {"A": 3, "B": 4},
        },
    )
    assert run_summary(drill) == (
        "backup run run-7 (2.0 MiB): checksum ok, restored, validation clean, 2 tables, 7 rows"
    )
    assert run_summary(_check("shop-b", missing=[CHUNK])) == (
        "120 chunks (480.0 KiB, 10%) checked: 0 damaged, 1 missing; breaks 1 snapshot and "
        "1 backup run (run-7)"
    )
    upload = backup_run(
        kind="upload",
        details={
            "backup_run_id": "run-7",
            "bytes_sent": 1024 * 1024,
            "backup_size": 8 * 1024 * 1024,
            "chunks_sent": 10,
            "chunks_present": 90,
            "complete": False,
            "paused_reason": "window closed",
        },
    )
    assert run_summary(upload) == (
        "backup run run-7: 1.0 MiB sent of a 8.0 MiB backup (10 chunks sent, 90 there), "
        "paused: window closed"
    )


def test_runs_accepts_the_new_kinds() -> None:
    client = FakeAdminClient([site()])
    for kind in ("drill", "store-check"):
        assert invoke(client, "runs", "shop-a", "--kind", kind).exit_code == 0
    assert [c[1][1] for c in client.calls] == ["drill", "store-check"]


def test_restore_and_drill_refuse_bad_input_before_any_call(tmp_path: Path) -> None:
    client = FakeAdminClient([site()])
    key = tmp_path / "none.key"
    bad_run = invoke(client, "restore", "shop-a", "--to", "x", "--key", str(key), "--run", "a/b")
    assert (bad_run.exit_code, bad_run.stderr) == (
        2,
        "error: --run 'a/b' is not a backup run id (as `runs` lists it)\n",
    )
    both = invoke(
        client,
        "drill",
        "shop-a",
        "--all",
        "--key",
        str(key),
        "--scratch",
        str(tmp_path),
        "--fb-password",
        "p",
    )
    assert (both.exit_code, both.stderr) == (2, "error: give one SITE or --all (not both)\n")
    no_password = invoke(
        client, "restore", "shop-a", "--to", "x", "--key", str(key), "--database", "y.fdb"
    )
    assert no_password.exit_code == 2
    assert "needs the Firebird password: set STORESAFE_FB_PASSWORD" in no_password.stderr
    assert client.calls == []
