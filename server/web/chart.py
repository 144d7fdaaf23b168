"""A small line chart as SVG geometry (the template draws it): backup size or duration."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence

WIDTH, HEIGHT = 560, 120
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 64, 12, 10, 22


@dataclasses.dataclass(frozen=True)
class Dot:
    x: float
    y: float
    label: str  # shown as the point's tooltip


@dataclasses.dataclass(frozen=True)
class Chart:
    title: str
    width: int
    height: int
    points: str  # the polyline's "x,y x,y ..."
    dots: list[Dot]
    y_top: str
    y_bottom: str
    x_first: str
    x_last: str
    plot: tuple[float, float, float, float]  # left, top, right, bottom

    @property
    def empty(self) -> bool:
        return not self.dots


def line_chart(
    title: str,
    series: Sequence[tuple[dt.datetime, float]],
    fmt: Callable[[float], str],
    *,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Chart:
    """Points in time order scaled into the plot; the y axis starts at zero."""
    left, top = float(PAD_LEFT), float(PAD_TOP)
    right, bottom = float(width - PAD_RIGHT), float(height - PAD_BOTTOM)
    data = sorted(series)
    if not data:
        return Chart(title, width, height, "", [], "", "", "", "", (left, top, right, bottom))
    t0, t1 = data[0][0], data[-1][0]
    span = (t1 - t0).total_seconds() or 1.0
    peak = max(v for _, v in data) or 1.0
    dots = []
    for when, value in data:
        x = left + (right - left) * ((when - t0).total_seconds() / span if len(data) > 1 else 0.5)
        y = bottom - (bottom - top) * (value / peak)
        dots.append(Dot(round(x, 1), round(y, 1), f"{when:%Y-%m-%d %H:%M} UTC: {fmt(value)}"))
    return Chart(
        title=title,
        width=width,
        height=height,
        points=" ".join(f"{d.x},{d.y}" for d in dots),
        dots=dots,
        y_top=fmt(peak),
        y_bottom=fmt(0),
        x_first=f"{t0:%Y-%m-%d}",
        x_last=f"{t1:%Y-%m-%d}",
        plot=(left, top, right, bottom),
    )
