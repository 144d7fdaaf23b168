"""Backoff grows exponentially to its cap, with full jitter from an injected source."""

from __future__ import annotations

import pytest

from agent.backoff import Backoff


def test_ceiling_doubles_up_to_the_cap() -> None:
    b = Backoff(base=1.0, cap=10.0, rand=lambda: 1.0)
    assert [b.next_delay() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert b.failures == 6


def test_full_jitter_scales_the_ceiling_by_the_random_draw() -> None:
    draws = iter([0.0, 0.5, 0.25])
    b = Backoff(base=2.0, cap=100.0, rand=lambda: next(draws))
    assert [b.next_delay() for _ in range(3)] == [0.0, 2.0, 2.0]


def test_reset_starts_over() -> None:
    b = Backoff(base=1.0, cap=60.0, rand=lambda: 1.0)
    for _ in range(5):
        b.next_delay()
    b.reset()
    assert b.failures == 0
    assert b.next_delay() == 1.0


def test_many_failures_never_overflow() -> None:
    b = Backoff(base=1.0, cap=60.0, rand=lambda: 1.0)
    for _ in range(10_000):
        assert b.next_delay() <= 60.0


def test_default_random_stays_within_the_ceiling() -> None:
    b = Backoff(base=1.0, cap=8.0)
    for _ in range(200):
        ceiling = b.ceiling()
        assert 0.0 <= b.next_delay() <= ceiling


@pytest.mark.parametrize(("base", "cap", "factor"), [(0, 1, 2), (2, 1, 2), (1, 2, 0.5)])
def test_nonsense_settings_are_refused(base: float, cap: float, factor: float) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(base=base, cap=cap, factor=factor)
