"""Splitting `KEY=VALUE` and choosing the layer: shape only, the server judges values."""

from __future__ import annotations

import pytest

from cli import values
from common.errors import InvalidArgument


@pytest.mark.parametrize(
    ("text", "pair"),
    [
        ("backup.dir=C:\\Backups", ("backup.dir", "C:\\Backups")),
        ("backup.schedule=0 21 * * *", ("backup.schedule", "0 21 * * *")),
        ("upload.window=", ("upload.window", "")),
        ("firebird.password=a=b==", ("firebird.password", "a=b==")),
        (" backup.keep_daily =7", ("backup.keep_daily", "7")),
        ("nope.key=x", ("nope.key", "x")),  # unknown keys are the server's to refuse
        ("backup.keep_daily=ten", ("backup.keep_daily", "ten")),
    ],
)
def test_assignment_splits_at_the_first_equals(text: str, pair: tuple[str, str]) -> None:
    assert values.assignment(text) == pair


@pytest.mark.parametrize("text", ["backup.dir", "=C:\\Backups", "", "back up.dir=x", "="])
def test_malformed_assignment_is_one_sentence(text: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        values.assignment(text)
    assert err.value.message == (
        f"'{text}' is not KEY=VALUE: write it like backup.schedule='0 21 * * *'"
    )


def test_assignments_refuse_a_key_twice_or_set_and_unset() -> None:
    assert values.assignments(["a.b=1", "c.d=2"], ["e.f"]) == {"a.b": "1", "c.d": "2"}
    with pytest.raises(InvalidArgument, match=r"the key a\.b is given twice"):
        values.assignments(["a.b=1", "a.b=2"], [])
    with pytest.raises(InvalidArgument, match=r"the key a\.b is both set and unset"):
        values.assignments(["a.b=1"], ["a.b"])


def test_layer_is_exactly_one() -> None:
    assert values.layer(True, None, None) == ("fleet", "")
    assert values.layer(False, " north ", None) == ("group", "north")
    assert values.layer(False, None, "shop-a") == ("site", "shop-a")
    for args in ((False, None, None), (True, "north", None), (False, "north", "shop-a")):
        with pytest.raises(InvalidArgument) as err:
            values.layer(*args)
        assert err.value.message == (
            "choose exactly one layer: --fleet, --group GROUP or --site SITE"
        )
    with pytest.raises(InvalidArgument, match="is not a valid site name"):
        values.layer(False, None, "shop a")
    with pytest.raises(InvalidArgument, match="is not a valid group name"):
        values.layer(False, "", None)
