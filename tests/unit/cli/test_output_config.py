"""Rendering of configuration and remote commands: the JSON contract and the text views."""

from __future__ import annotations

import re

from cli import output_config
from cli.models import ConfigChange, ConfigEntry
from tests.support.cli import NOW, command, revision, rollout_row, site_config


def plain(text: str, style: str) -> str:
    return text


def marked(text: str, style: str) -> str:
    return f"<{style}>{text}</>" if style else text


def test_change_json_and_text() -> None:
    change = ConfigChange("site:shop-a", 7, ("backup.dir", "firebird.password"))
    assert output_config.change_json(change) == {
        "layer": "site:shop-a",
        "revision": 7,
        "changed": ["backup.dir", "firebird.password"],
    }
    text = output_config.change_text(change)
    assert text.startswith("Revision 7 on site:shop-a changed backup.dir, firebird.password.")
    assert "storesafe config rollout" in text


def test_nothing_changed() -> None:
    same = ConfigChange("fleet", 0, ())
    assert output_config.change_json(same) == {"layer": "fleet", "revision": None, "changed": []}
    assert output_config.change_text(same).startswith("Nothing changed on fleet")


def test_site_config_json() -> None:
    data = output_config.site_config_json(site_config(refused=""))
    assert set(data) == {"site", "desired_revision", "applied_revision", "refused", "entries"}
    assert (data["desired_revision"], data["applied_revision"], data["refused"]) == (5, 4, None)
    entries = {e["key"]: e for e in data["entries"]}
    assert entries["backup.keep_daily"] == {
        "key": "backup.keep_daily",
        "value": "10",
        "layer": "group:north",
        "secret": False,
    }
    assert entries["firebird.password"]["value"] == "********"
    assert entries["firebird.password"]["secret"] is True


def test_secrets_are_masked_even_if_the_server_sent_them_plain() -> None:
    leaked = site_config(entries=(ConfigEntry("firebird.password", "hunter2", "site:shop-a"),))
    assert "hunter2" not in str(output_config.site_config_json(leaked))
    assert "hunter2" not in output_config.site_config_text(leaked, plain, explain=True)
    rev = revision(changes={"firebird.password": "hunter2", "backup.dir": "(unset)"})
    assert output_config.revision_json(rev)["changes"] == {
        "backup.dir": "(unset)",
        "firebird.password": "********",
    }
    assert "hunter2" not in output_config.history_text([rev], NOW, plain)
    unset = site_config(entries=(ConfigEntry("firebird.password", "", "default", secret=True),))
    assert output_config.site_config_json(unset)["entries"][0]["value"] == ""


def test_site_config_text_without_and_with_explain() -> None:
    text = output_config.site_config_text(site_config(), plain, explain=False)
    assert re.search(r"^Applied revision +4 \(pending\)$", text, re.MULTILINE)
    assert re.search(r"^backup\.dir +C:\\Backups$", text, re.MULTILINE)
    assert "SET BY" not in text
    assert "group:north" not in text
    explained = output_config.site_config_text(site_config(), plain, explain=True)
    assert re.search(r"^KEY +VALUE +SET BY$", explained, re.MULTILINE)
    assert re.search(r"^backup\.keep_daily +10 +group:north$", explained, re.MULTILINE)
    assert re.search(r"^backup\.schedule +0 22 \* \* \* +fleet$", explained, re.MULTILINE)
    assert re.search(r"^firebird\.password +\*{8} +site:shop-a$", explained, re.MULTILINE)
    assert re.search(r"^images\.dir +\(empty\) +default$", explained, re.MULTILINE)


def test_site_config_text_shows_a_refusal_in_red() -> None:
    refused = site_config(refused="backup.dir C:\\Backups is not writable")
    text = output_config.site_config_text(refused, marked, explain=False)
    assert "<bold red>4 (refused)</>" in text
    assert "<red>backup.dir C:\\Backups is not writable</>" in text
    applied = site_config(applied_revision=5)
    assert "<green>5 (applied)</>" in output_config.site_config_text(applied, marked, explain=False)


def test_history_json_and_text() -> None:
    row = output_config.revision_json(revision())
    assert row == {
        "revision": 3,
        "layer": "site:shop-a",
        "scope": "site",
        "target": "shop-a",
        "author": "admin",
        "at": "2026-11-26T21:00:00Z",
        "changes": {"backup.dir": "C:\\Backups", "firebird.password": "********"},
    }
    fleet = revision(2, scope="fleet", target="")
    assert output_config.revision_json(fleet)["layer"] == "fleet"
    text = output_config.history_text([revision(), fleet], NOW, plain)
    lines = text.splitlines()
    assert lines[0].split() == ["REV", "WHEN", "AUTHOR", "LAYER", "CHANGES"]
    assert lines[1].startswith("3 ")
    assert "site:shop-a" in lines[1]
    assert "backup.dir=C:\\Backups, firebird.password=********" in lines[1]
    assert "(1h ago)" in lines[1]
    assert lines[2].startswith("2 ")


def test_history_shows_values_in_config_set_syntax() -> None:
    """Servers before 0.2 stored `True` and `26.0`; values read as a technician types them."""
    old = revision(changes={"upload.enabled": "True", "status.stale_after_hours": "30.0"})
    assert output_config.revision_json(old)["changes"] == {
        "status.stale_after_hours": "30",
        "upload.enabled": "true",
    }
    text = output_config.history_text([old], NOW, plain)
    assert "status.stale_after_hours=30, upload.enabled=true" in text


def test_rollout_json_text_and_tally() -> None:
    rows = [
        rollout_row("shop-a"),
        rollout_row("shop-b", "pending"),
        rollout_row("shop-c", "refused", refused="cannot apply"),
        rollout_row("shop-d", "offline", last_seen_at=None),
    ]
    assert output_config.rollout_json(rows[0]) == {
        "site": "shop-a",
        "group": "default",
        "desired_revision": 5,
        "applied_revision": 5,
        "state": "applied",
        "refused": None,
        "last_seen_at": "2026-11-26T21:58:00Z",
    }
    assert output_config.rollout_json(rows[2])["refused"] == "cannot apply"
    assert output_config.rollout_json(rows[3])["last_seen_at"] is None
    text = output_config.rollout_text(rows, NOW, marked)
    assert "<bold red>refused</>" in text
    assert "<red>cannot apply</>" in text
    assert "<yellow>pending</>" in text
    assert text.endswith("4 sites: 1 applied, 1 pending, 1 refused, 1 offline")
    assert output_config.rollout_tally(rows[:1]) == "1 site: 1 applied"


def test_commands_json_and_text() -> None:
    done = command(
        "rejected", message="backup is not configured", delivered_at=NOW, finished_at=NOW
    )
    row = output_config.command_json(done)
    assert set(row) == {
        "id",
        "site",
        "kind",
        "state",
        "message",
        "created_at",
        "created_by",
        "delivered_at",
        "finished_at",
    }
    assert (row["state"], row["message"]) == ("rejected", "backup is not configured")
    assert row["finished_at"] == "2026-11-26T22:00:00Z"
    assert output_config.command_json(command())["delivered_at"] is None
    text = output_config.commands_text([done, command()], NOW, marked)
    lines = text.splitlines()
    assert "<red>rejected</>" in lines[1]
    assert lines[1].endswith("backup is not configured")
    assert "<yellow>queued</>" in lines[2]
    assert command().id in lines[2]


def test_sent_text_says_how_to_follow() -> None:
    text = output_config.sent_text("shop-a", "backup-now", "c-1")
    assert text.startswith("Queued backup-now for site shop-a as command c-1.")
    assert "storesafe commands shop-a" in text


def test_control_characters_from_agents_do_not_reach_the_terminal() -> None:
    evil = command("failed", message="boom\x1b[2J\nnext")
    assert "\x1b" not in output_config.commands_text([evil], NOW, plain)
    refused = rollout_row("shop-a", "refused", refused="bad\x1b]0;x\x07")
    assert "\x1b" not in output_config.rollout_text([refused], NOW, plain)


def test_a_change_that_reaches_no_site_is_warned_about() -> None:
    warn = output_config.reach_warning
    assert warn(ConfigChange("group:nrth", 4, ("backup.dir",), sites=0)).startswith(
        "no site is in group 'nrth': the change applies only to sites that join it later"
    )
    assert warn(ConfigChange("fleet", 4, ("backup.dir",), sites=0)).startswith(
        "no site is enrolled yet"
    )
    assert warn(ConfigChange("group:north", 4, ("backup.dir",), sites=3)) == ""
    assert warn(ConfigChange("group:north", 4, ("backup.dir",))) == ""  # not told: no guess
