"""Configuration values are shown the way `storesafe config set` takes them."""

from __future__ import annotations

import pytest

from common.config_schema import KEYS, shown_as_typed, text


@pytest.mark.parametrize(
    ("key", "typed", "shown"),
    [
        ("upload.enabled", "off", "false"),
        ("status.stale_after_hours", "30", "30"),
        ("status.stale_after_hours", "0.5", "0.5"),
        ("backup.keep_daily", "14", "14"),
        ("backup.schedule", "0  21 * * *", "0 21 * * *"),
        ("backup.dir", "C:\\Backups", "C:\\Backups"),
    ],
)
def test_values_read_as_config_syntax(key: str, typed: str, shown: str) -> None:
    value = KEYS[key].parse(typed)
    assert text(value) == shown
    assert KEYS[key].parse(text(value)) == value  # what is shown can be typed back


def test_booleans_read_true_and_false() -> None:
    assert (text(True), text(False)) == ("true", "false")


@pytest.mark.parametrize(
    ("key", "stored", "shown"),
    [
        ("upload.enabled", "True", "true"),  # as servers before 0.2 stored it
        ("status.stale_after_hours", "30.0", "30"),
        ("backup.keep_daily", "14", "14"),
        ("backup.keep_daily", "not a number", "not a number"),
        ("no.such_key", "x", "x"),
    ],
)
def test_stored_values_read_as_config_syntax(key: str, stored: str, shown: str) -> None:
    assert shown_as_typed(key, stored) == shown
