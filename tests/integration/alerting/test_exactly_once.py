"""Exactly once: across a server restart in the middle of a reminder interval, after a
sender died holding a lease, and with two replicas on one database seeing the same
transition at the same moment."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from pathlib import Path

from tests.support.alerts import AlertStack, WebhookReceiver
from tests.support.clock import FakeClock

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def _events(hook: WebhookReceiver) -> list[tuple[str, str]]:
    return [(b["event"], b["site"]) for b in hook.delivered()]


def test_a_restart_mid_reminder_interval_neither_repeats_nor_loses_alerts(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        clock = FakeClock(T0)
        hook = WebhookReceiver()
        await hook.start()
        url = f"sqlite:///{tmp_path / 'state.db'}"
        try:
            async with AlertStack(url, tmp_path, clock) as s:
                await s.configure(
                    "fleet", alerts__webhook_url=hook.url("/hook"), alerts__digest_time=""
                )
                await s.add_site("shop-a")
                await s.add_site("shop-b")
                s.backup_failed("shop-a")
                await s.tick()
                assert _events(hook) == [("transition", "shop-a")]
                # shop-b fails; the transition is queued, then the server stops before
                # sending it
                clock.advance(2 * HOUR)
                s.seen("shop-a")
                s.backup_failed("shop-b")
                await s.evaluator.run_once()

            # a new process, 10 h into shop-a's reminder interval: the queued alert goes
            # out once, and nothing is repeated
            clock.advance(8 * HOUR)
            async with AlertStack(url, tmp_path, clock) as s:
                s.seen("shop-a", "shop-b")
                await s.tick()
                await s.tick()
                assert _events(hook) == [("transition", "shop-a"), ("transition", "shop-b")]
                # it stops again, across the moment shop-a's reminder is due
            clock.set(T0 + 30 * HOUR)
            async with AlertStack(url, tmp_path, clock) as s:
                s.seen("shop-a", "shop-b")
                await s.tick()
                await s.tick()
                assert _events(hook)[2:] == [("reminder", "shop-a"), ("reminder", "shop-b")]
                clock.advance(HOUR)
                s.seen("shop-a", "shop-b")
                await s.tick()
                assert len(hook.delivered()) == 4
        finally:
            await hook.stop()

    asyncio.run(body())


def test_a_delivery_whose_sender_died_is_sent_once_after_its_lease(tmp_path: Path) -> None:
    async def body() -> None:
        clock = FakeClock(T0)
        hook = WebhookReceiver()
        await hook.start()
        url = f"sqlite:///{tmp_path / 'state.db'}"
        try:
            async with AlertStack(url, tmp_path, clock) as s:
                await s.configure(
                    "fleet", alerts__webhook_url=hook.url("/hook"), alerts__digest_time=""
                )
                await s.add_site("shop-a")
                s.backup_failed("shop-a")
                await s.evaluator.run_once()
                [job] = await s.store.claim(clock.now(), dt.timedelta(minutes=2), 10)
                # ... and the process dies before sending
            async with AlertStack(url, tmp_path, clock) as s:
                await s.deliver()
                assert hook.hits == []  # still leased to the dead sender
                clock.advance(dt.timedelta(minutes=2, seconds=1))
                await s.deliver()
                await s.deliver()
                assert _events(hook) == [("transition", "shop-a")]
                [row] = await s.store.deliveries(site="shop-a", limit=5)
                assert (row.id, row.state, row.attempts) == (job.id, "delivered", 2)
        finally:
            await hook.stop()

    asyncio.run(body())


def test_two_replicas_seeing_the_same_transitions_send_each_alert_once(
    db_url: str, tmp_path: Path
) -> None:
    """Two replicas (own engines, caches and clocks) on one database, evaluating and
    delivering at the same moments."""

    async def body() -> None:
        hook = WebhookReceiver()
        await hook.start()
        clock_a, clock_b = FakeClock(T0), FakeClock(T0)
        sites = [f"shop-{i:02d}" for i in range(20)]
        try:
            async with (
                AlertStack(db_url, tmp_path, clock_a) as a,
                AlertStack(db_url, tmp_path, clock_b) as b,
            ):
                await a.configure(
                    "fleet", alerts__webhook_url=hook.url("/hook"), alerts__digest_time="00:00"
                )
                await b.hub.refresh()
                for site in sites:
                    await a.add_site(site)

                async def both() -> None:
                    await asyncio.gather(a.evaluator.run_once(), b.evaluator.run_once())
                    await asyncio.gather(a.deliver(), b.deliver())

                await both()  # the day's digest: nobody is bad, nothing to send
                for site in sites:
                    a.backup_failed(site)
                await both()
                await both()
                for clock in (clock_a, clock_b):
                    clock.advance(25 * HOUR)
                for site in sites:
                    a.seen(site)
                await both()
                for site in sites:
                    a.backed_up(site)
                await both()
                await both()
                got = Counter(_events(hook))
                expected = Counter(
                    [(e, s) for s in sites for e in ("transition", "reminder", "resolved")]
                )
                expected[("digest", "")] = 1  # the second day's, listing all 20
                assert got == expected
                [digest] = [b for b in hook.delivered() if b["event"] == "digest"]
                assert len(digest["sites"]) == 20
        finally:
            await hook.stop()

    asyncio.run(body())
