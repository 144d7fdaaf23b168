"""The pure alert policy: transitions, reminders, the offline grace and inhibition, digests."""

from __future__ import annotations

import datetime as dt

import pytest

from server.alerting.policy import Alerted, Kind, Observed, Rules, decide, digest_day
from server.domain.status import Status

T0 = dt.datetime(2026, 3, 6, 17, 0, tzinfo=dt.UTC)  # a Friday evening
H = dt.timedelta(hours=1)
RULES = Rules()  # daily reminders, 60 min offline grace


def bad(status: Status, since: dt.datetime = T0, notified: dt.datetime = T0) -> Alerted:
    return Alerted(status, since, notified, "old")


@pytest.mark.parametrize("status", [Status.WARNING, Status.STALE, Status.FAILING, Status.NEVER])
def test_every_move_into_a_bad_state_is_one_transition(status: Status) -> None:
    d = decide(None, Observed(status, ("why",)), RULES, T0, "new")
    assert d is not None
    assert (d.kind, d.status_from, d.status_to) == (Kind.TRANSITION, Status.OK, status)
    assert d.state == Alerted(status, T0, T0, "new")
    # and then nothing while it stays so, short of the reminder interval
    assert decide(d.state, Observed(status), RULES, T0 + 23 * H, "x") is None


def test_a_move_between_bad_states_is_a_transition_and_back_to_ok_is_resolved() -> None:
    d = decide(bad(Status.WARNING), Observed(Status.FAILING), RULES, T0 + H, "n")
    assert d is not None and (d.kind, d.status_from, d.status_to) == (
        Kind.TRANSITION,
        Status.WARNING,
        Status.FAILING,
    )
    r = decide(bad(Status.FAILING), Observed(Status.OK), RULES, T0 + 2 * H, "n")
    assert r is not None
    assert (r.kind, r.status_from, r.status_to, r.since, r.state) == (
        Kind.RESOLVED,
        Status.FAILING,
        Status.OK,
        T0,
        None,
    )
    assert decide(None, Observed(Status.OK), RULES, T0, "n") is None


def test_a_reminder_is_due_each_interval_and_keeps_the_since() -> None:
    d = decide(bad(Status.STALE), Observed(Status.STALE), RULES, T0 + 24 * H, "n")
    assert d is not None and d.kind is Kind.REMINDER
    assert d.state == Alerted(Status.STALE, T0, T0 + 24 * H, "n")
    assert d.since == T0
    none = Rules.of(reminder_hours=0, offline_grace_minutes=60)
    assert decide(bad(Status.STALE), Observed(Status.STALE), none, T0 + 99 * H, "n") is None


def test_offline_waits_for_its_grace_and_gets_no_reminders() -> None:
    since = T0 + dt.timedelta(minutes=15)  # last seen T0, offline after 15 min
    offline = Observed(Status.OFFLINE, ("agent not seen",), offline_since=since)
    assert decide(None, offline, RULES, since + dt.timedelta(minutes=59), "n") is None
    d = decide(None, offline, RULES, since + H, "n")
    assert d is not None and (d.kind, d.status_to) == (Kind.TRANSITION, Status.OFFLINE)
    # the weekend: no reminder however long it lasts
    assert decide(d.state, offline, RULES, T0 + 60 * H, "n") is None


def test_while_offline_within_grace_the_status_last_alerted_holds() -> None:
    """Inhibition: what being offline hides (no backups: stale) is not alerted, and a
    site already failing is not 'resolved' by going quiet."""
    since = T0
    offline = Observed(Status.OFFLINE, offline_since=since)
    assert decide(None, offline, RULES, since + 30 * dt.timedelta(minutes=1), "n") is None
    failing = bad(Status.FAILING, notified=T0 - 2 * H)
    assert decide(failing, offline, RULES, since + dt.timedelta(minutes=30), "n") is None
    # after the grace: failing -> offline
    d = decide(failing, offline, RULES, since + 2 * H, "n")
    assert d is not None and (d.status_from, d.status_to) == (Status.FAILING, Status.OFFLINE)


def test_a_site_back_from_offline_that_is_stale_says_so() -> None:
    d = decide(bad(Status.OFFLINE), Observed(Status.STALE), RULES, T0 + 60 * H, "n")
    assert d is not None and (d.kind, d.status_from, d.status_to) == (
        Kind.TRANSITION,
        Status.OFFLINE,
        Status.STALE,
    )


def test_the_digest_is_due_from_its_time_on_each_utc_day() -> None:
    assert digest_day(T0.replace(hour=7, minute=59), "08:00") is None
    assert digest_day(T0.replace(hour=8, minute=0), "08:00") == "2026-03-06"
    assert digest_day(T0.replace(hour=23, minute=59), "08:00") == "2026-03-06"
    assert digest_day(T0, "") is None
