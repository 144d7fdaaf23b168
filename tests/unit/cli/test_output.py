"""Rendering: the JSON contract and what a technician reads in the tables."""

from __future__ import annotations

import datetime as dt

import pytest
from rich.console import Console

from cli import output
from cli.humanize import run_summary
from cli.models import Disk, FirebirdHealth, SiteDetail
from tests.unit.cli.fakes import NOW, backup_run, site

SITE_FIELDS = {
    "site",
    "group",
    "status",
    "last_good_backup_at",
    "last_backup_at",
    "last_image_sync_at",
    "last_seen_at",
    "config_revision_desired",
    "config_revision_applied",
    "agent_version",
    "problems",
    "hostname",
}


def render(renderable: object, width: int = 160) -> str:
    console = Console(width=width, record=True, color_system=None)
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()


def test_site_json_has_the_contract_fields_with_z_times_and_null_for_never() -> None:
    row = output.site_json(site(problems=("image sync failing", "disk nearly full")))
    assert set(row) == SITE_FIELDS
    assert row["last_good_backup_at"] == "2026-11-26T19:00:00Z"
    assert row["last_seen_at"] == "2026-11-26T21:58:00Z"
    assert row["last_image_sync_at"] is None
    assert row["problems"] == ["image sync failing", "disk nearly full"]
    assert row["status"] == "ok"
    assert row["config_revision_applied"] == 3


def test_site_json_never_backed_up() -> None:
    row = output.site_json(site(status="never", last_good_backup_at=None, last_backup_at=None))
    assert row["status"] == "never"
    assert row["last_good_backup_at"] is None
    assert row["last_backup_at"] is None


def test_run_json() -> None:
    row = output.run_json(backup_run())
    assert row["kind"] == "backup"
    assert row["outcome"] == "succeeded"
    assert row["finished_at"] == "2026-11-26T21:00:00Z"
    assert row["duration_seconds"] == 120.0
    assert row["details"]["verification"] == "passed"


def test_site_detail_json_extends_the_row() -> None:
    detail = SiteDetail(
        summary=site(),
        os="Windows 10",
        disks=(Disk("backup", "C:\\Backups", 100, 5),),
        firebird=FirebirdHealth(oit=10, oat=20, server_version="WI-V3.0.10"),
        last_backup=backup_run(),
    )
    data = output.site_detail_json(detail)
    assert set(data) >= SITE_FIELDS
    assert data["disks"] == [
        {"label": "backup", "path": "C:\\Backups", "total_bytes": 100, "free_bytes": 5}
    ]
    assert data["firebird"]["oat"] == 20
    assert data["last_backup"]["id"] == "r-1"
    assert data["enrolled_at"] is None


def test_sites_table_shows_ages_never_problems_and_counts() -> None:
    sites = [
        site("shop-a"),
        site("shop-b", "failing", problems=("backup failed: gbak error", "disk nearly full")),
        site("shop-c", "never", last_good_backup_at=None, config_revision_applied=2),
    ]
    text = render(output.sites_table(sites, NOW))
    line_a = next(line for line in text.splitlines() if "shop-a" in line)
    assert "3h ago" in line_a
    assert "2m ago" in line_a
    assert "never" in line_a  # image sync never ran
    line_b = next(line for line in text.splitlines() if "shop-b" in line)
    assert "backup failed: gbak error; disk nearly full" in line_b
    line_c = next(line for line in text.splitlines() if "shop-c" in line)
    assert "2 → 3" in line_c
    assert "3 sites: 1 ok, 1 failing, 1 never" in text


def test_status_colours() -> None:
    assert output.status_text("ok").style == "green"
    assert output.status_text("failing").style == "bold red"
    assert output.status_text("martian").style == "dim"


def test_names_with_brackets_are_not_markup() -> None:
    text = render(output.sites_table([site("[bold]x[/bold]", problems=("[red]y",))], NOW))
    assert "[bold]x[/bold]" in text
    assert "[red]y" in text


def test_run_result_words() -> None:
    assert output.run_result(backup_run()).plain == "verified"
    failed_verify = backup_run(details={"verification": "failed"})
    assert output.run_result(failed_verify).plain == "verify failed"
    assert output.run_result(backup_run(outcome="failed")).plain == "failed"
    assert output.run_result(backup_run(details={})).plain == "unverified"
    sync = backup_run(kind="image-sync", details={})
    assert output.run_result(sync).plain == "succeeded"


def test_run_summary_says_what_happened_and_why_it_failed() -> None:
    assert run_summary(backup_run()) == "gbak 3.0 MiB shop-20261126.fbk.zst"
    failed = backup_run(
        outcome="failed",
        details={},
        error_class="firebird.auth",
        error_message="Firebird refused the user SYSDBA",
    )
    assert run_summary(failed) == "Firebird refused the user SYSDBA [firebird.auth]"
    sync = backup_run(
        kind="image-sync",
        details={
            "files_scanned": 3400,
            "files_copied": 12,
            "bytes_copied": 2048,
            "files_failed": 1,
        },
    )
    assert run_summary(sync) == "12 of 3400 files copied (2.0 KiB), 1 failed"


def test_site_view_lists_facts_disks_and_health() -> None:
    detail = SiteDetail(
        summary=site(status="warning", problems=("disk nearly full",)),
        os="Windows 10",
        disks=(Disk("backup", "C:\\Backups", 100 * 1024**3, 5 * 1024**3),),
        firebird=FirebirdHealth(oit=10, oat=5010, next_transaction=5020, ods="12.0"),
        enrolled_at=NOW - dt.timedelta(days=30),
        last_backup=backup_run(),
    )
    text = "\n".join(render(view) for view in output.site_view(detail, NOW))
    assert "disk nearly full" in text
    assert "2026-11-26 19:00 UTC (3h ago)" in text
    assert "verified" in text
    assert "C:\\Backups" in text
    assert "5%" in text
    assert "5000" in text  # the OAT - OIT gap


def test_empty_fleet_says_how_to_start(capsys: pytest.CaptureFixture[str]) -> None:
    output.print_sites([], NOW, filtered=False)
    output.print_sites([], NOW, filtered=True)
    out = capsys.readouterr().out
    assert (
        "No sites yet: create an enrollment token with 'storesafe token create --site SITE'." in out
    )
    assert "No sites match this filter." in out
