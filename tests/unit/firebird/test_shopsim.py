"""The shop writer's statistics: percentiles and commits attributed to time windows."""

from __future__ import annotations

from tests.support.shopsim import WriterStats, percentile


def test_percentile() -> None:
    assert percentile([], 99) == 0.0
    assert percentile([7.0], 99) == 7.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.5
    assert 99.0 <= percentile(values, 99) <= 100.0


def test_latencies_between_windows() -> None:
    stats = WriterStats(
        transfers=5,
        errors=[],
        latencies_ms=[1.0, 2.0, 3.0, 4.0, 5.0],
        started=[10.0, 11.0, 12.0, 13.0, 14.0],
    )
    assert stats.between([(11.0, 13.0)]) == [2.0, 3.0]  # start inclusive, end exclusive
    assert stats.between([(10.0, 11.0), (14.0, 20.0)]) == [1.0, 5.0]
    assert stats.between([]) == []
    assert stats.percentile(50) == 3.0
