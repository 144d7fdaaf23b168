"""Input checks at the CLI boundary: durations, names, statuses, kinds, limits."""

from __future__ import annotations

import datetime as dt

import pytest

from cli import values
from common.errors import InvalidArgument


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", dt.timedelta(minutes=30)),
        ("24h", dt.timedelta(hours=24)),
        ("7d", dt.timedelta(days=7)),
        ("1w", dt.timedelta(days=7)),
        ("90s", dt.timedelta(seconds=90)),
        ("1h30m", dt.timedelta(hours=1, minutes=30)),
        (" 2H ", dt.timedelta(hours=2)),
    ],
)
def test_parse_duration_reads_number_unit_pairs(text: str, expected: dt.timedelta) -> None:
    assert values.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "24", "h", "24x", "-1h", "1.5h", "24 h", "1h 30m", "abc"])
def test_parse_duration_refuses_anything_else_in_one_sentence(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        values.parse_duration(text)
    message = str(caught.value)
    assert "is not a duration" in message
    assert "30m, 24h or 7d" in message
    assert "\n" not in message


@pytest.mark.parametrize("text", ["0m", "30s", "31d", "5w"])
def test_token_lifetime_stays_between_a_minute_and_30_days(text: str) -> None:
    with pytest.raises(InvalidArgument, match="out of range: use between 1m and 30d"):
        values.token_lifetime(text)


def test_token_lifetime_accepts_the_bounds() -> None:
    assert values.token_lifetime("1m") == dt.timedelta(minutes=1)
    assert values.token_lifetime("30d") == dt.timedelta(days=30)


def test_status_names_are_lowercased_and_checked() -> None:
    assert values.status_name("Failing") == "failing"
    with pytest.raises(InvalidArgument, match=r"unknown status 'broken': use one of ok, warning"):
        values.status_name("broken")


def test_kind_names_accept_underscore_for_dash() -> None:
    assert values.kind_name("image_sync") == "image-sync"
    assert values.kind_name("BACKUP") == "backup"
    with pytest.raises(InvalidArgument, match="unknown run kind 'restore'"):
        values.kind_name("restore")


@pytest.mark.parametrize("bad", [0, -1, 1001])
def test_limit_is_1_to_1000(bad: int) -> None:
    assert values.limit(1) == 1
    assert values.limit(1000) == 1000
    with pytest.raises(InvalidArgument, match=f"a limit of {bad} is out of range: use 1 to 1000"):
        values.limit(bad)


@pytest.mark.parametrize("bad", ["", "   ", "shop a", "a/b", "-shop", ".x", "x" * 65, "shöp"])
def test_names_follow_the_server_rule(bad: str) -> None:
    with pytest.raises(
        InvalidArgument,
        match=r"is not a valid site name: use 1-64 letters, digits, '.', '_' or '-'",
    ):
        values.name(bad)


def test_names_are_trimmed() -> None:
    assert values.name("  shop-a ") == "shop-a"
    assert values.name("Shop_A.1", "group") == "Shop_A.1"
