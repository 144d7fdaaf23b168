"""A scripted sequence of status changes, driven by a FakeClock: the webhook receiver,
Slack and Teams paths, and the SMTP sink get exactly the alerts the policy promises."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

from tests.support.alerts import AlertStack, SmtpSink, WebhookReceiver
from tests.support.clock import FakeClock

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def _event(path: str, body: Any) -> tuple[str, ...]:
    if path in ("/hook", "/north"):
        return (path, body["event"], body["site"], body["previous"], body["status"])
    return (path, body["text"])


class Seen:
    """What arrived since the last look, as a multiset."""

    def __init__(self, hook: WebhookReceiver, sink: SmtpSink) -> None:
        self.hook, self.sink = hook, sink
        self.hits = 0
        self.mails = 0

    def new(self) -> Counter[tuple[str, ...]]:
        hits = self.hook.hits[self.hits :]
        mails = self.sink.messages[self.mails :]
        self.hits, self.mails = len(self.hook.hits), len(self.sink.messages)
        found = [_event(h.path, h.body) for h in hits if h.answered == 200]
        found += [("email", str(m["Subject"])) for m in mails]
        return Counter(found)


def chat(*titles: str) -> Counter[tuple[str, ...]]:
    """The same titles on Slack, Teams and e-mail."""
    return Counter(
        [(p, t) for t in titles for p in ("/slack",)]
        + [("email", t) for t in titles]
        + [("/teams", t) for t in titles]
    )


def _teams_titles(hook: WebhookReceiver) -> None:
    """Teams bodies are cards: index them by their first TextBlock for `_event`."""
    for h in hook.hits:
        if h.path == "/teams" and "text" not in h.body:
            h.body["text"] = h.body["attachments"][0]["content"]["body"][0]["text"]


def test_a_scripted_sequence_gets_exactly_the_expected_alerts(tmp_path: Path) -> None:
    asyncio.run(_sequence(tmp_path))


async def _sequence(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    hook, sink = WebhookReceiver(), SmtpSink()
    await hook.start()
    sink.start()
    try:
        async with AlertStack(f"sqlite:///{tmp_path / 'state.db'}", tmp_path, clock) as s:
            await s.configure(
                "fleet",
                alerts__webhook_url=hook.url("/hook"),
                alerts__slack_url=hook.url("/slack"),
                alerts__teams_url=hook.url("/teams"),
                alerts__email_to="ops@example.org",
                alerts__smtp_host="127.0.0.1",
                alerts__smtp_port=str(sink.port),
                alerts__smtp_security="none",
                alerts__digest_time="13:00",
            )
            await s.configure("group", "north", alerts__webhook_url=hook.url("/north"))
            await s.add_site("shop-a")
            await s.add_site("shop-b", group="north")
            seen = Seen(hook, sink)

            async def step() -> Counter[tuple[str, ...]]:
                await s.tick()
                _teams_titles(hook)
                return seen.new()

            # all ok: nothing, and no digest before 13:00
            assert await step() == Counter()

            # shop-a's backup fails: one transition on every channel
            s.backup_failed("shop-a")
            failing = "StoreSafe: shop-a is FAILING (was ok)"
            assert await step() == Counter(
                [("/hook", "transition", "shop-a", "ok", "failing")]
            ) + chat(failing)
            # nothing more while it stays failing, however often we look
            clock.advance(dt.timedelta(minutes=30))
            s.seen("shop-a", "shop-b")
            assert await step() == Counter()
            assert await step() == Counter()

            # 13:10: the daily digest lists shop-a (shop-b is ok), to shop-a's destinations
            clock.advance(dt.timedelta(minutes=40))
            s.seen("shop-a", "shop-b")
            digest = "StoreSafe daily digest: 1 site(s) not ok"
            got = await step()
            assert got == Counter([("/hook", "digest", "", "", "")]) + chat(digest)
            assert hook.delivered("/hook")[-1]["sites"] == [
                {
                    "site": "shop-a",
                    "group": "default",
                    "status": "failing",
                    "problem": "latest backup failed: gbak: I/O error on the backup disk",
                }
            ]

            # a day after the transition: one reminder (default every 24 h)
            clock.set(T0 + dt.timedelta(hours=24, minutes=10))
            s.seen("shop-a")
            s.backed_up("shop-b")
            reminder = "StoreSafe: shop-a is still FAILING (since 2026-01-01 12:00 UTC)"
            assert await step() == Counter(
                [("/hook", "reminder", "shop-a", "failing", "failing")]
            ) + chat(reminder)
            assert await step() == Counter()

            # shop-a repaired: resolved
            s.backed_up("shop-a")
            resolved = "StoreSafe: shop-a is ok again (was failing)"
            assert await step() == Counter(
                [("/hook", "resolved", "shop-a", "failing", "ok")]
            ) + chat(resolved)

            # shop-b falls silent at 12:10: offline from 12:25, alerted only after the
            # 60 min grace; nothing at 12:40
            clock.advance(dt.timedelta(minutes=30))
            s.backed_up("shop-a")
            assert await step() == Counter()

            # 13:30: the grace is over: one offline notice, to the north group's webhook;
            # the day's digest (13:00) lists shop-b as offline
            clock.advance(dt.timedelta(minutes=50))
            s.backed_up("shop-a")
            offline = "StoreSafe: shop-b is OFFLINE (was ok)"
            assert await step() == Counter(
                [
                    ("/north", "transition", "shop-b", "ok", "offline"),
                    ("/north", "digest", "", "", ""),
                ]
            ) + chat(offline, digest)

            # offline for 27 more hours: it is stale too by now, but stale is not alerted
            # while offline, and offline gets no reminders: only the next day's digest
            clock.advance(dt.timedelta(hours=27))
            s.backed_up("shop-a")
            assert await step() == Counter([("/north", "digest", "", "", "")]) + chat(digest)
            assert hook.delivered("/north")[-1]["sites"][0]["status"] == "offline"
            assert await step() == Counter()

            # shop-b comes back with a fresh backup: resolved, from offline
            s.backed_up("shop-a", "shop-b")
            back = "StoreSafe: shop-b is ok again (was offline)"
            assert await step() == Counter(
                [("/north", "resolved", "shop-b", "offline", "ok")]
            ) + chat(back)

            listed = await s.store.deliveries(site="", limit=1000)
            assert {d.state for d in listed} == {"delivered"}
            assert {d.destination for d in listed} == {
                f"127.0.0.1:{hook.port}",
                "ops@example.org via 127.0.0.1",
            }
    finally:
        sink.stop()
        await hook.stop()
