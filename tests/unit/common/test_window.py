import datetime as dt

import pytest

from common.errors import InvalidArgument
from common.window import UploadWindow

UTC = dt.UTC


def at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 12, 7, hour, minute, tzinfo=UTC)


def test_empty_is_always_open() -> None:
    w = UploadWindow.parse("", UTC)
    assert w.always and w.is_open(at(3))
    assert w.seconds_until_open(at(3)) == 0 and w.seconds_until_close(at(3)) is None


def test_same_day_window() -> None:
    w = UploadWindow.parse("01:00-05:30", UTC)
    assert not w.is_open(at(0, 59)) and w.is_open(at(1)) and w.is_open(at(5, 29))
    assert not w.is_open(at(5, 30))
    assert w.seconds_until_open(at(0)) == 3600
    assert w.seconds_until_open(at(6)) == 19 * 3600
    assert w.seconds_until_close(at(5)) == 1800
    assert w.seconds_until_close(at(6)) == 0


def test_window_wrapping_midnight() -> None:
    w = UploadWindow.parse("22:00-06:00", UTC)
    assert w.is_open(at(23)) and w.is_open(at(0)) and w.is_open(at(5, 59))
    assert not w.is_open(at(6)) and not w.is_open(at(12))
    assert w.seconds_until_close(at(23)) == 7 * 3600
    assert w.seconds_until_open(at(21)) == 3600


def test_local_time_zone_is_used() -> None:
    plus2 = dt.timezone(dt.timedelta(hours=2))
    w = UploadWindow.parse("01:00-02:00", plus2)
    assert w.is_open(at(23, 30))  # 01:30 at +02:00
    assert not w.is_open(at(1, 30))


def test_equal_ends_is_whole_day() -> None:
    assert UploadWindow.parse("03:00-03:00", UTC).always


@pytest.mark.parametrize("text", ["1:00-2:00", "24:00-01:00", "01:00", "garbage", "01:00-02:60"])
def test_bad_text_is_refused(text: str) -> None:
    with pytest.raises(InvalidArgument, match="HH:MM-HH:MM"):
        UploadWindow.parse(text, UTC)
