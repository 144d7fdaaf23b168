"""The exact shapes sent to Slack, Teams and the generic webhook, and the e-mail text."""

from __future__ import annotations

import datetime as dt

from server.alerting.channels import slack, teams, webhook
from server.alerting.channels.email import message
from server.alerting.message import DigestLine, Notice
from server.alerting.policy import Kind

AT = dt.datetime(2026, 3, 6, 17, 5, tzinfo=dt.UTC)
SINCE = dt.datetime(2026, 3, 5, 21, 0, tzinfo=dt.UTC)
NOTICE = Notice(
    kind=Kind.TRANSITION,
    at=AT,
    site="shop-a",
    group="north",
    status_from="ok",
    status_to="failing",
    since=AT,
    problems=("latest backup failed: gbak <I/O> & co",),
)


def test_slack_gets_text_plus_blocks_with_mrkdwn_escaped() -> None:
    assert slack.payload(NOTICE) == {
        "text": "StoreSafe: shop-a is FAILING (was ok)",
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": "StoreSafe: shop-a is FAILING (was ok)"},
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "• latest backup failed: gbak &lt;I/O&gt; &amp; co",
                },
            },
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": "group north · 2026-03-06T17:05:00Z"}],
            },
        ],
    }


def test_teams_gets_a_workflows_message_with_an_adaptive_card_1_4() -> None:
    reminder = Notice(
        kind=Kind.REMINDER,
        at=AT,
        site="shop-a",
        group="north",
        status_from="stale",
        status_to="stale",
        since=SINCE,
        problems=("last verified backup 44 h ago (limit 26 h)",),
    )
    assert teams.payload(reminder) == {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {
                            "type": "TextBlock",
                            "text": "StoreSafe: shop-a is still STALE (since 2026-03-05 21:00 UTC)",
                            "weight": "Bolder",
                            "size": "Medium",
                            "wrap": True,
                        },
                        {
                            "type": "FactSet",
                            "facts": [
                                {"title": "Site", "value": "shop-a"},
                                {"title": "Group", "value": "north"},
                                {"title": "Status", "value": "stale"},
                                {"title": "Was", "value": "stale"},
                                {"title": "At", "value": "2026-03-06T17:05:00Z"},
                            ],
                        },
                        {
                            "type": "TextBlock",
                            "text": "- last verified backup 44 h ago (limit 26 h)",
                            "wrap": True,
                        },
                    ],
                },
            }
        ],
    }


def test_the_generic_webhook_gets_a_flat_object_and_every_digest_site() -> None:
    lines = tuple(DigestLine(f"shop-{i:03d}", "g", "stale", "old") for i in range(120))
    digest = Notice(kind=Kind.DIGEST, at=AT, digest=lines)
    body = webhook.payload(digest)
    assert body["event"] == "digest"
    assert body["text"] == "StoreSafe daily digest: 120 site(s) not ok"
    assert len(body["sites"]) == 120
    assert webhook.payload(NOTICE) == {
        "event": "transition",
        "text": "StoreSafe: shop-a is FAILING (was ok)",
        "site": "shop-a",
        "group": "north",
        "status": "failing",
        "previous": "ok",
        "since": "2026-03-06T17:05:00Z",
        "at": "2026-03-06T17:05:00Z",
        "problems": ["latest backup failed: gbak <I/O> & co"],
        "sites": [],
    }
    # chat messages show the first 50 and say how many more
    section = slack.payload(digest)["blocks"][1]["text"]["text"]
    assert section.count("•") == 51
    assert section.endswith("... and 70 more (storesafe sites --status ...)")


def test_a_notice_survives_its_trip_through_the_database() -> None:
    digest = Notice(kind=Kind.DIGEST, at=AT, digest=(DigestLine("a", "g", "stale", "x"),))
    for n in (NOTICE, digest):
        assert Notice.from_json(n.to_json()) == n


def test_the_email_has_the_title_as_subject_and_every_problem() -> None:
    msg = message(
        {"to": "ops@example.org, boss@example.org", "host": "mail.example.org", "from": ""},
        NOTICE,
    )
    assert msg["Subject"] == "StoreSafe: shop-a is FAILING (was ok)"
    assert msg["From"] == "storesafe@mail.example.org"
    assert msg["To"] == "ops@example.org, boss@example.org"
    assert msg.get_content() == (
        "StoreSafe: shop-a is FAILING (was ok)\n\n"
        "Site: shop-a (group north)\n"
        "At: 2026-03-06 17:05 UTC\n\n"
        "- latest backup failed: gbak <I/O> & co\n"
    )
