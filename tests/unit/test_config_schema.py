"""The configuration schema refuses values that can never work (server and agent share it)."""

from __future__ import annotations

import datetime as dt

import pytest

from common import config_schema
from common.config_schema import KEYS, fires, settable, validate
from common.errors import InvalidArgument
from common.vault import FleetPrivateKey


@pytest.mark.parametrize(
    ("values", "sentence"),
    [
        (
            {"firebird.host": "db.shop/99999"},
            "firebird.host='db.shop/99999' is not valid: the port must be between 1 and 65535",
        ),
        (
            {"firebird.host": "db.shop/0"},
            "firebird.host='db.shop/0' is not valid: the port must be between 1 and 65535",
        ),
        ({"firebird.user": ""}, "firebird.user='' is not valid: may not be empty"),
        (
            {"backup.schedule": "0 0 31 2 *"},
            "backup.schedule='0 0 31 2 *' is not valid: it never fires (no time within 8 years)",
        ),
        (
            {"images.schedule": "0 0 30 2 *"},
            "images.schedule='0 0 30 2 *' is not valid: it never fires",
        ),
        (
            {"validate.schedule": "0 0 31 4,6,9,11 *"},
            "validate.schedule='0 0 31 4,6,9,11 *' is not valid: it never fires",
        ),
        (
            {"upload.enabled": "maybe"},
            "upload.enabled='maybe' is not valid: expected true or false",
        ),
        (
            {"upload.max_run_minutes": "0"},
            "upload.max_run_minutes='0' is not valid: must be at least 1",
        ),
    ],
)
def test_values_that_can_never_work_are_refused(values: dict[str, str], sentence: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        validate(values)
    assert err.value.message.startswith(sentence), err.value.message


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [
        ("firebird.host", "db.shop/3050", "db.shop/3050"),
        ("firebird.host", "db.shop/65535", "db.shop/65535"),
        ("firebird.host", "10.0.0.5/1", "10.0.0.5/1"),
        ("firebird.host", "localhost", "localhost"),
        ("firebird.user", "BACKUP", "BACKUP"),
        ("backup.schedule", "0 0 29 2 *", "0 0 29 2 *"),  # leap days come
        ("backup.schedule", "0 0 31 2 1", "0 0 31 2 1"),  # cron ORs the days: Mondays in Feb
        ("upload.enabled", "false", False),  # the default is what agents receive
        ("upload.enabled", "true", True),
        ("upload.max_run_minutes", "30", 30),
    ],
)
def test_values_that_work_are_kept(name: str, raw: str, value: object) -> None:
    assert validate({name: raw}) == {name: value}


def test_the_never_firing_check_is_bounded_and_fast_for_every_rare_schedule() -> None:
    """croniter stops after max_years_between_matches years: no endless search."""
    start = dt.datetime(2026, 12, 4, tzinfo=dt.UTC)
    assert not fires("0 0 31 2 *", now=start)
    assert not fires("59 23 31 11 *", now=start)
    assert fires("0 0 29 2 *", now=dt.datetime(2097, 3, 1, tzinfo=dt.UTC))  # 2104: 7 years
    assert fires("0 21 * * *", now=start)


def test_upload_keys_can_be_set_and_unknown_keys_cannot() -> None:
    assert KEYS["upload.enabled"].default is False
    assert KEYS["upload.max_run_minutes"].default == 60
    assert settable("upload.enabled").name == "upload.enabled"
    assert settable("backup.dir").name == "backup.dir"
    with pytest.raises(InvalidArgument, match="unknown configuration key"):
        settable("upload.turbo")


def test_the_defaults_pass_their_own_validation() -> None:
    """Agents validate the whole effective configuration, defaults included."""
    assert validate(config_schema.defaults()) == config_schema.defaults()


def test_upload_recovery_key_takes_only_a_fleet_public_key() -> None:
    key = KEYS["upload.recovery_key"]
    text = FleetPrivateKey.generate().public.text
    assert key.parse(f"  {text} ") == text
    assert key.parse("") == ""
    with pytest.raises(InvalidArgument, match="is not a fleet public key"):
        key.parse("ssdk1:AAAA")
    with pytest.raises(InvalidArgument, match=r"upload\.recovery_key"):
        key.parse(text[:-3])
