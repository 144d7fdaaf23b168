"""The site page's chart geometry."""

from __future__ import annotations

import datetime as dt

from server.web import present
from server.web.chart import line_chart

T0 = dt.datetime(2026, 11, 1, 21, tzinfo=dt.UTC)


def test_points_span_the_plot_in_time_order_with_zero_at_the_bottom() -> None:
    series = [(T0 + dt.timedelta(days=d), float(v)) for d, v in [(2, 50), (0, 100), (1, 0)]]
    chart = line_chart("Backup size", series, present.size)
    left, top, right, bottom = chart.plot
    assert [d.x for d in chart.dots] == [left, (left + right) / 2, right]
    assert [d.y for d in chart.dots] == [top, bottom, (top + bottom) / 2]
    assert chart.points.split() == [f"{d.x},{d.y}" for d in chart.dots]
    assert (chart.y_top, chart.y_bottom) == ("100 B", "0 B")
    assert (chart.x_first, chart.x_last) == ("2026-11-01", "2026-11-03")
    assert chart.dots[0].label == "2026-11-01 21:00 UTC: 100 B"


def test_one_point_sits_in_the_middle_and_none_is_empty() -> None:
    one = line_chart("d", [(T0, 30.0)], present.duration)
    assert not one.empty and one.dots[0].x == (one.plot[0] + one.plot[2]) / 2
    assert line_chart("d", [], present.duration).empty


def test_present_formats() -> None:
    assert present.size(5 * 1024 * 1024) == "5.0 MiB"
    assert present.duration(90) == "2 min"
    assert present.duration(7200) == "2.0 h"
    assert present.age(None, T0) == "never"
    assert present.age(T0 - dt.timedelta(days=3), T0) == "3 d ago"
    assert present.when(T0) == "2026-11-01 21:00 UTC"
