"""Rendering: the JSON contract and what a technician reads in the tables."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import pytest

from cli import output
from cli.humanize import run_summary
from cli.models import Disk, FirebirdHealth, SiteDetail
from tests.support.cli import NOW, backup_run, site

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
    "last_offsite_at",
    "last_offsite_backup_run_id",
    "last_offsite_bytes_sent",
    "last_offsite_backup_size",
    "last_drill_ok_at",
    "last_drill_at",
    "last_drill_outcome",
    "last_store_check_at",
    "store_damaged_chunks",
}


def plain(text: str, style: str) -> str:
    return text


def marked(text: str, style: str) -> str:
    """Shows styles as <style>text</> so tests can see the colours."""
    return f"<{style}>{text}</>" if style else text


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
    lines = output.sites_text(sites, NOW, plain).splitlines()
    assert lines[0].split() == [
        "SITE",
        "GROUP",
        "STATUS",
        "VERIFIED",
        "SEEN",
        "IMAGES",
        "OFFSITE",
        "PROVEN",
        "REV",
        "PROBLEMS",
    ]
    assert (
        lines[1] == "shop-a   default   ok        3h ago     2m ago   never    never     never    3"
    )
    assert lines[2] == (
        "shop-b   default   failing   3h ago     2m ago   never    never     never    3       "
        "backup failed: gbak error; disk nearly full"
    )
    assert lines[3] == (
        "shop-c   default   never     never      2m ago   never    never     never    2 → 3"
    )
    assert lines[4:] == ["", "3 sites: 1 ok, 1 failing, 1 never"]


def test_status_colours() -> None:
    text = output.sites_text([site("a"), site("b", "failing"), site("c", "martian")], NOW, marked)
    assert "<bold>SITE</>" in text
    assert "<green>ok</>" in text
    assert "<bold red>failing</>" in text
    assert "<dim>martian</>" in text


def test_painter_is_plain_when_piped(capsys: pytest.CaptureFixture[str]) -> None:
    assert output.painter()("ok", "green") == "ok"


def test_agent_text_cannot_reach_the_terminal_raw() -> None:
    evil = site("a", problems=("\x1b]0;pwned\x07x\ny",), hostname="\x1b[2J")
    text = output.sites_text([evil], NOW, plain)
    assert "\x1b" not in text
    assert "\x07" not in text
    assert " ]0;pwned x y" in text
    assert output.clean("a\tb\rc") == "a b c"


def test_run_result_words() -> None:
    assert output.run_result(backup_run()) == ("verified", "green")
    failed_verify = backup_run(details={"verification": "failed"})
    assert output.run_result(failed_verify) == ("verify failed", "bold red")
    assert output.run_result(backup_run(outcome="failed")) == ("failed", "bold red")
    assert output.run_result(backup_run(details={})) == ("unverified", "yellow")
    sync = backup_run(kind="image-sync", details={})
    assert output.run_result(sync) == ("succeeded", "green")
    cut = backup_run(kind="image-sync", details={"incomplete": "the upload window closed"})
    assert output.run_result(cut) == ("incomplete", "yellow")


def test_runs_table() -> None:
    lines = output.runs_text([backup_run()], NOW, plain).splitlines()
    assert lines[1] == (
        "1h ago     backup   verified   -      2m00s   schedule   gbak 3.0 MiB shop-20261126.fbk.zst"
    )


def test_runs_show_what_became_of_each_backup_file() -> None:
    runs = [
        dataclasses.replace(backup_run(), file_state="pruned"),
        dataclasses.replace(backup_run(), file_state="damaged"),
    ]
    lines = output.runs_text(runs, NOW, plain).splitlines()
    assert lines[0].split()[:4] == ["FINISHED", "KIND", "RESULT", "FILE"]
    assert "verified   pruned" in lines[1]
    assert "verified   damaged" in lines[2]
    assert output.run_json(runs[0])["file_state"] == "pruned"
    assert output.run_json(backup_run())["file_state"] is None


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
    same = backup_run(
        kind="image-sync",
        details={"files_scanned": 3400, "summary": "unchanged since snapshot 0e517bf04c70"},
    )
    assert run_summary(same) == (
        "0 of 3400 files copied (0 B), 0 failed; unchanged since snapshot 0e517bf04c70"
    )


def test_site_view_lists_facts_disks_and_health() -> None:
    detail = SiteDetail(
        summary=site(status="warning", problems=("disk nearly full",)),
        os="Windows 10",
        disks=(Disk("backup", "C:\\Backups", 100 * 1024**3, 5 * 1024**3),),
        firebird=FirebirdHealth(oit=10, oat=5010, next_transaction=5020, ods="12.0"),
        enrolled_at=NOW - dt.timedelta(days=30),
        last_backup=backup_run(),
    )
    text = output.site_text(detail, NOW, plain)
    assert "disk nearly full" in text
    assert "2026-11-26 19:00 UTC (3h ago)" in text
    assert "verified" in text
    assert "C:\\Backups" in text
    assert "5%" in text
    assert re.search(r"^Gap \(OAT - OIT\) +5000$", text, re.MULTILINE)
    assert re.search(r"^Problems +disk nearly full$", text, re.MULTILINE)
    assert re.search(
        r"^Last backup details +gbak 3.0 MiB shop-20261126.fbk.zst$", text, re.MULTILINE
    )


def test_clock_skew_of_a_site_never_seen_is_not_a_number() -> None:
    never = SiteDetail(summary=site(status="never", last_seen_at=None))
    assert re.search(r"^Clock skew +never seen$", output.site_text(never, NOW, plain), re.M)
    seen = SiteDetail(summary=site(), clock_skew_seconds=-1.54)
    assert re.search(r"^Clock skew +-1.5s$", output.site_text(seen, NOW, plain), re.M)
    assert re.search(
        r"^Clock skew +\+0.0s$", output.site_text(SiteDetail(site()), NOW, plain), re.M
    )


def test_counts_read_as_english() -> None:
    assert output.sites_text([site()], NOW, plain).endswith("\n\n1 site: 1 ok")
    assert output.sites_text([site(), site("b")], NOW, plain).endswith("\n\n2 sites: 2 ok")


def test_empty_fleet_says_how_to_start(capsys: pytest.CaptureFixture[str]) -> None:
    output.print_sites([], NOW, filtered=False)
    output.print_sites([], NOW, filtered=True)
    out = capsys.readouterr().out
    assert (
        "No sites yet: create an enrollment token with 'storesafe token create --site SITE'." in out
    )
    assert "No sites match this filter." in out


def test_clock_skew_of_a_site_never_seen_is_null_in_json() -> None:
    never = SiteDetail(summary=site(status="never", last_seen_at=None))
    assert output.site_detail_json(never)["clock_skew_seconds"] is None
    seen = SiteDetail(summary=site(), clock_skew_seconds=-1.5)
    assert output.site_detail_json(seen)["clock_skew_seconds"] == -1.5


def test_sites_and_site_show_the_off_site_copy_the_last_drill_and_the_store_check() -> None:
    shown = site(
        last_offsite_at=NOW - dt.timedelta(hours=5),
        last_offsite_backup_run_id="run-7",
        last_offsite_bytes_sent=3 * 1024 * 1024,
        last_offsite_backup_size=40 * 1024 * 1024,
        last_drill_ok_at=NOW - dt.timedelta(days=3),
        last_drill_at=NOW - dt.timedelta(hours=1),
        last_drill_outcome="failed",
        last_store_check_at=NOW - dt.timedelta(hours=2),
        store_damaged_chunks=3,
    )
    row = output.site_json(shown)
    assert row["last_offsite_at"] == "2026-11-26T17:00:00Z"
    assert (row["last_offsite_bytes_sent"], row["last_offsite_backup_size"]) == (
        3 * 1024 * 1024,
        40 * 1024 * 1024,
    )
    assert (row["last_drill_outcome"], row["store_damaged_chunks"]) == ("failed", 3)
    table = output.sites_text([shown], NOW, marked)
    assert "5h ago" in table and "<bold red>3d ago</>" in table
    detail = output.site_text(SiteDetail(summary=shown), NOW, plain)
    assert (
        "Last off-site copy    2026-11-26 17:00 UTC (5h ago), backup run run-7: 3.0 MiB sent of a 40.0 MiB backup"
        in detail
    )
    assert (
        "Proven restorable     2026-11-23 22:00 UTC (3d ago); the newest drill failed 1h ago"
        in detail
    )
    assert (
        "Store check           2026-11-26 20:00 UTC (2h ago): 3 chunks damaged or missing" in detail
    )
    never = output.site_text(SiteDetail(summary=site()), NOW, plain)
    assert "Last off-site copy    never" in never and "Proven restorable     never" in never
    assert output.site_json(site())["last_drill_ok_at"] is None
