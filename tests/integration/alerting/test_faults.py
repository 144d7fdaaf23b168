"""Endpoints that fail: a webhook that answers 500, is down or hangs; SMTP that refuses
or hangs up mid-message. Deliveries retry with backoff, and every failure is listed."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from tests.support.alerts import AlertStack, SmtpSink, WebhookReceiver
from tests.support.clock import FakeClock
from tests.support.server import free_port

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)


def _stack(tmp_path: Path, clock: FakeClock, **kw: object) -> AlertStack:
    return AlertStack(f"sqlite:///{tmp_path / 'state.db'}", tmp_path, clock, **kw)  # type: ignore[arg-type]


# Every test here sets alerts.digest_time="" (no digest): only the transition is sent.


def test_a_webhook_answering_500_is_retried_with_backoff_until_it_works(tmp_path: Path) -> None:
    async def body() -> None:
        clock = FakeClock(T0)
        hook = WebhookReceiver()
        await hook.start()
        hook.modes["/flaky"] = "500"
        try:
            async with _stack(tmp_path, clock) as s:
                await s.configure(
                    "fleet", alerts__digest_time="", alerts__webhook_url=hook.url("/flaky")
                )
                await s.add_site("shop-a")
                s.backup_failed("shop-a")
                await s.tick()
                assert [h.answered for h in hook.hits] == [500]
                [row] = await s.store.deliveries(site="shop-a", limit=10)
                assert (row.state, row.attempts) == ("pending", 1)
                assert row.last_error == f"127.0.0.1:{hook.port} answered HTTP 500: boom"
                assert row.next_attempt_at == T0 + MINUTE  # backoff base

                clock.advance(MINUTE / 2)
                await s.tick()  # not due yet
                assert len(hook.hits) == 1
                clock.advance(MINUTE / 2)
                await s.tick()  # second attempt, fails; next in 2 min
                assert len(hook.hits) == 2
                [row] = await s.store.deliveries(site="shop-a", limit=10)
                assert (row.attempts, row.next_attempt_at) == (2, T0 + 3 * MINUTE)

                hook.modes["/flaky"] = "ok"
                clock.advance(2 * MINUTE)
                await s.tick()
                assert [h.answered for h in hook.hits] == [500, 500, 200]
                [row] = await s.store.deliveries(site="shop-a", limit=10)
                assert (row.state, row.attempts) == ("delivered", 3)
                assert await s.store.totals() == {
                    "pending": 0,
                    "delivered": 1,
                    "failed": 0,
                    "errors": 2,
                }
                sample = s.metrics.registry.get_sample_value
                assert sample("storesafe_alert_deliveries_total", {"channel": "webhook"}) == 1
                assert sample("storesafe_alert_failures_total", {"channel": "webhook"}) == 2
                clock.advance(10 * MINUTE)
                await s.tick()
                assert len(hook.hits) == 3  # delivered once, never again
        finally:
            await hook.stop()

    asyncio.run(body())


def test_a_dead_webhook_fails_for_good_after_the_last_attempt(tmp_path: Path) -> None:
    async def body() -> None:
        clock = FakeClock(T0)
        port = free_port()  # nothing listens here
        async with _stack(tmp_path, clock) as s:
            await s.configure(
                "fleet",
                alerts__digest_time="",
                alerts__webhook_url=f"http://127.0.0.1:{port}/T000/B000/secret-token",
            )
            await s.add_site("shop-a")
            s.backup_failed("shop-a")
            for _ in range(6):  # 4 attempts: at 0, +1, +2 and +4 minutes
                await s.tick()
                clock.advance(4 * MINUTE)
                s.seen("shop-a")
            [row] = await s.store.deliveries(site="shop-a", limit=10)
            assert (row.state, row.attempts) == ("failed", 4)
            assert row.last_error == f"cannot connect to 127.0.0.1:{port}: Connection refused"
            assert row.destination == f"127.0.0.1:{port}"
            assert "secret-token" not in repr(row)
            totals = await s.store.totals()
            assert (totals["failed"], totals["errors"]) == (1, 4)

    asyncio.run(body())


def test_a_webhook_that_hangs_times_out_and_is_retried(tmp_path: Path) -> None:
    async def body() -> None:
        clock = FakeClock(T0)
        hook = WebhookReceiver()
        await hook.start()
        hook.modes["/slow"] = "hang"
        try:
            async with _stack(tmp_path, clock, timeout=0.5) as s:
                await s.configure(
                    "fleet", alerts__digest_time="", alerts__webhook_url=hook.url("/slow")
                )
                await s.add_site("shop-a")
                s.backup_failed("shop-a")
                await s.tick()
                [row] = await s.store.deliveries(site="shop-a", limit=10)
                assert (row.state, row.attempts) == ("pending", 1)
                assert row.last_error == f"127.0.0.1:{hook.port} did not answer within 0.5 s"
                hook.modes["/slow"] = "ok"
                clock.advance(MINUTE)
                await s.tick()
                [row] = await s.store.deliveries(site="shop-a", limit=10)
                assert (row.state, row.attempts) == ("delivered", 2)
        finally:
            await hook.stop()

    asyncio.run(body())


def test_smtp_refusing_the_recipient_fails_at_once_and_is_listed(tmp_path: Path) -> None:
    async def body() -> None:
        clock = FakeClock(T0)
        sink = SmtpSink()
        sink.start()
        sink.mode = "refuse"
        try:
            async with _stack(tmp_path, clock) as s:
                await s.configure(
                    "fleet",
                    alerts__digest_time="",
                    alerts__email_to="nobody@example.org",
                    alerts__smtp_host="127.0.0.1",
                    alerts__smtp_port=str(sink.port),
                    alerts__smtp_security="none",
                )
                await s.add_site("shop-a")
                s.backup_failed("shop-a")
                await s.tick()
                [row] = await s.store.deliveries(site="shop-a", limit=10)
                assert (row.state, row.attempts) == ("failed", 1)  # 5xx: retrying cannot help
                assert row.last_error == (
                    f"127.0.0.1:{sink.port} refused the recipients (SMTP 550)"
                )
                assert row.destination == "nobody@example.org via 127.0.0.1"
                assert sink.messages == []
        finally:
            sink.stop()

    asyncio.run(body())


def test_smtp_hanging_up_mid_message_is_retried(tmp_path: Path) -> None:
    async def body() -> None:
        clock = FakeClock(T0)
        sink = SmtpSink()
        sink.start()
        sink.mode = "drop"
        try:
            async with _stack(tmp_path, clock) as s:
                await s.configure(
                    "fleet",
                    alerts__digest_time="",
                    alerts__email_to="ops@example.org",
                    alerts__smtp_host="127.0.0.1",
                    alerts__smtp_port=str(sink.port),
                    alerts__smtp_security="none",
                    alerts__smtp_from="alerts@msp.example",
                )
                await s.add_site("shop-a")
                s.backup_failed("shop-a")
                await s.tick()
                [row] = await s.store.deliveries(site="shop-a", limit=10)
                assert (row.state, row.attempts) == ("pending", 1)
                assert row.last_error == (
                    f"127.0.0.1:{sink.port} closed the connection mid-message"
                )
                sink.mode = "ok"
                clock.advance(MINUTE)
                await s.tick()
                [row] = await s.store.deliveries(site="shop-a", limit=10)
                assert (row.state, row.attempts) == ("delivered", 2)
                [msg] = sink.messages
                assert msg["Subject"] == "StoreSafe: shop-a is FAILING (was ok)"
                assert (msg["From"], msg["To"]) == ("alerts@msp.example", "ops@example.org")
                assert "- latest backup failed: gbak: I/O error" in msg.get_content()
        finally:
            sink.stop()

    asyncio.run(body())
