"""The agent's config store: validate, apply atomically, survive restarts and damage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.configsync import CONFIG_FILE, ConfigStore


def test_starts_on_defaults_at_revision_zero(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path)
    assert store.revision == 0
    assert store.current["backup.method"] == "gbak"


def test_applies_persists_and_reloads(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path)
    result = store.apply(3, {"backup.keep_daily": 9, "backup.dir": str(tmp_path)})
    assert result.applied and result.error == ""
    again = ConfigStore(tmp_path)
    assert again.revision == 3
    assert again.current["backup.keep_daily"] == 9
    assert again.current["backup.dir"] == str(tmp_path)
    assert (tmp_path / CONFIG_FILE).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("values", "why"),
    [
        ({"backup.schedule": "every day"}, "backup.schedule='every day' is not valid"),
        ({"backup.future_key": 1}, "unknown configuration key(s) backup.future_key"),
        ({"backup.dir": "C:\\Backups"}, "backup.dir=C:\\Backups is a Windows path"),
        ({"backup.dir": "/no/such/place/backups"}, "neither the folder nor its parent exists"),
        ({"images.dir": "/no/such/images"}, "images.dir=/no/such/images: no such folder"),
        ({"firebird.host": "db/99999"}, "the port must be between 1 and 65535"),
        ({"firebird.user": ""}, "firebird.user='' is not valid: may not be empty"),
        ({"backup.schedule": "0 0 31 2 *"}, "it never fires"),
        ({"upload.max_run_minutes": 0}, "upload.max_run_minutes=0 is not valid"),
    ],
)
def test_refuses_and_keeps_the_last_good_revision(
    tmp_path: Path, values: dict[str, object], why: str
) -> None:
    store = ConfigStore(tmp_path)
    assert store.apply(1, {"backup.keep_daily": 5}).applied
    result = store.apply(2, values)
    assert not result.applied
    assert why in result.error
    assert store.revision == 1 and store.current["backup.keep_daily"] == 5
    assert ConfigStore(tmp_path).revision == 1


def test_a_truncated_file_is_set_aside_and_revision_zero_asks_for_the_latest(
    tmp_path: Path,
) -> None:
    store = ConfigStore(tmp_path)
    store.apply(7, {"firebird.password": "pw"})
    path = tmp_path / CONFIG_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a power cut mid-write
    again = ConfigStore(tmp_path)
    assert again.revision == 0
    assert (tmp_path / (CONFIG_FILE + ".corrupt")).exists()
    assert again.apply(7, {"firebird.password": "pw"}).applied


def test_an_edited_file_fails_its_checksum(tmp_path: Path) -> None:
    ConfigStore(tmp_path).apply(4, {"backup.keep_daily": 3})
    path = tmp_path / CONFIG_FILE
    data = json.loads(path.read_text())
    data["body"]["values"]["backup.keep_daily"] = 300
    path.write_text(json.dumps(data))
    assert ConfigStore(tmp_path).revision == 0


def test_secrets_are_masked_for_display(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path)
    store.apply(1, {"firebird.password": "hunter2"})
    assert store.current.masked()["firebird.password"] == "********"
    assert "hunter2" not in repr(store.current.masked())
