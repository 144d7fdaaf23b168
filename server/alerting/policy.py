"""The pure alert policy: from a site's last alerted state, its status now and the time,
which notification (if any) is due.

After Prometheus Alertmanager and healthchecks.io:

- One notification per transition of the *alerted* status (ok, warning, stale,
  failing, never, offline), "resolved" on the way back to ok.
- A reminder while a bad state persists, every `reminder` (Alertmanager's
  repeat interval); none for offline, which is its own class and shows in the
  daily digest instead.
- Offline counts only after a grace period (healthchecks.io: down after the
  period plus grace). Until then the site keeps the status last alerted, so a
  shop PC switched off for the evening sends nothing, and what being offline
  hides (no backup arriving: stale) is not alerted either (inhibition).
- The digest is due once per UTC day, from the configured time on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum

from server.domain.status import Status


class Kind(enum.StrEnum):
    TRANSITION = "transition"
    REMINDER = "reminder"
    RESOLVED = "resolved"
    DIGEST = "digest"


@dataclasses.dataclass(frozen=True)
class Rules:
    """A site's alert timing, from its effective configuration."""

    reminder: dt.timedelta | None = dt.timedelta(hours=24)  # None: no reminders
    offline_grace: dt.timedelta = dt.timedelta(minutes=60)

    @classmethod
    def of(cls, reminder_hours: float, offline_grace_minutes: float) -> Rules:
        reminder = dt.timedelta(hours=reminder_hours) if reminder_hours > 0 else None
        return cls(reminder, dt.timedelta(minutes=offline_grace_minutes))


@dataclasses.dataclass(frozen=True)
class Alerted:
    """What was last alerted for a site that is not ok; `token` changes on every update."""

    status: Status
    since: dt.datetime
    notified_at: dt.datetime
    token: str


@dataclasses.dataclass(frozen=True)
class Observed:
    """A site's status now, and when it turned offline if it is."""

    status: Status
    problems: tuple[str, ...] = ()
    offline_since: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class Decision:
    """A notification due, and the alerted state to store with it (None: ok, no row)."""

    kind: Kind
    status_from: Status
    status_to: Status
    since: dt.datetime
    state: Alerted | None


def alert_status(observed: Observed, alerted: Status, rules: Rules, now: dt.datetime) -> Status:
    """The status alerts speak of: offline within its grace keeps the status last alerted."""
    if observed.status is Status.OFFLINE:
        since = observed.offline_since or now
        if now - since < rules.offline_grace:
            return alerted
    return observed.status


def decide(
    previous: Alerted | None, observed: Observed, rules: Rules, now: dt.datetime, token: str
) -> Decision | None:
    """The notification due for one site now, or None; `token` marks the new state."""
    before = previous.status if previous is not None else Status.OK
    after = alert_status(observed, before, rules, now)
    if after is not before:
        if after is Status.OK:
            since = previous.since if previous is not None else now
            return Decision(Kind.RESOLVED, before, Status.OK, since, None)
        return Decision(Kind.TRANSITION, before, after, now, Alerted(after, now, now, token))
    if previous is None or after is Status.OK:
        return None
    if after is Status.OFFLINE or rules.reminder is None:
        return None
    if now - previous.notified_at >= rules.reminder:
        state = dataclasses.replace(previous, notified_at=now, token=token)
        return Decision(Kind.REMINDER, after, after, previous.since, state)
    return None


def digest_day(now: dt.datetime, digest_time: str) -> str | None:
    """The UTC day (YYYY-MM-DD) whose digest is due at `now`, or None (not yet, or off)."""
    if not digest_time:
        return None
    hour, minute = (int(p) for p in digest_time.split(":"))
    now = now.astimezone(dt.UTC)
    if (now.hour, now.minute) < (hour, minute):
        return None
    return now.date().isoformat()
