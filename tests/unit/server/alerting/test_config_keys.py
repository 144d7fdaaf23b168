"""The alerts.* keys: validated, secret where they carry a credential, never sent to agents."""

from __future__ import annotations

import pytest

from common import config_schema
from common.errors import InvalidArgument


@pytest.mark.parametrize(
    ("name", "raw", "why"),
    [
        ("alerts.webhook_url", "ftp://example.org/x", "expected an http:// or https:// URL"),
        ("alerts.slack_url", "hooks.slack.com/services/T/B/x", "expected an http:// or https://"),
        ("alerts.teams_url", "https://:443/x", "expected an http:// or https:// URL"),
        ("alerts.webhook_url", "https://example.org:99999/x", "the URL's port is not a number"),
        ("alerts.email_to", "ops@example.org, not-an-address", "'not-an-address' is not an"),
        ("alerts.digest_time", "8am", "expected HH:MM (24 h, UTC)"),
        ("alerts.reminder_hours", "-1", "must be at least 0"),
        ("alerts.smtp_security", "ssl", "expected one of none, starttls, tls"),
    ],
)
def test_bad_alert_values_are_refused(name: str, raw: str, why: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        config_schema.validate({name: raw})
    assert why in err.value.message


def test_a_refused_secret_url_is_not_echoed() -> None:
    with pytest.raises(InvalidArgument) as err:
        config_schema.validate({"alerts.slack_url": "hooks.slack.com/services/T/B/sekrit"})
    assert "sekrit" not in err.value.message
    assert err.value.message.startswith("alerts.slack_url=*** is not valid")


def test_good_alert_values_are_normalised() -> None:
    assert config_schema.validate(
        {
            "alerts.webhook_url": " https://hooks.example.org/a/b?c=d ",
            "alerts.email_to": "a@example.org,b@example.org ,",
            "alerts.digest_time": "07:30",
            "alerts.reminder_hours": "0",
        }
    ) == {
        "alerts.webhook_url": "https://hooks.example.org/a/b?c=d",
        "alerts.email_to": "a@example.org, b@example.org",
        "alerts.digest_time": "07:30",
        "alerts.reminder_hours": 0.0,
    }


def test_webhook_urls_and_the_smtp_password_are_secret_and_masked() -> None:
    secret = {k for k, v in config_schema.KEYS.items() if v.secret and k.startswith("alerts.")}
    assert secret == {
        "alerts.webhook_url",
        "alerts.slack_url",
        "alerts.teams_url",
        "alerts.smtp_password",
    }
    assert config_schema.masked("alerts.slack_url", "https://hooks.slack.com/x") == "********"


def test_agents_never_receive_alert_keys() -> None:
    sent = config_schema.agent_values(config_schema.defaults())
    assert not [k for k in sent if k.startswith("alerts.")]
    assert "backup.dir" in sent
