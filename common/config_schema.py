"""The configuration keys: each with its type, default, validator and secrecy.

Server and agent both validate with this one table: the server at
`config set`, the agent again on receipt. The admin CLI loads it for the help
of `config set` at every start, so the two validators that need a heavy library
(cron parsing, the vault's public keys) import it when they run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from common.errors import InvalidArgument
from common.window import UploadWindow

Value = str | int | float | bool

_FORBIDDEN_PATH_CHARS = set('<>"|?*') | {chr(c) for c in range(32)}
_WINDOWS_ABS = re.compile(r"^(?:[A-Za-z]:\\|\\\\[^\\]+\\[^\\]+)")
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}(?:/(\d{1,5}))?$")
_EMAIL = re.compile(r"^[^@\s,<>]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")

CRON_HORIZON_YEARS = 8
"""A schedule must fire within this many years of now (8: 29 February always does,
across the century years that are not leap years); a later or no next time is refused."""


@dataclasses.dataclass(frozen=True)
class Key:
    name: str
    kind: str  # "str", "int", "float", "bool", "path", "cron", "choice", "window", "host",
    # "url", "emails", "hhmm", "recovery_key"
    default: Value
    help: str
    secret: bool = False
    server_only: bool = False  # never sent to agents (alert destinations)
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    required: bool = False  # text that may not be empty
    not_built: str = ""  # why the key cannot be set yet (it stays known, at its default)

    def parse(self, raw: Any) -> Value:
        """Turn a raw value (string from the CLI, or typed from JSON) into a valid value."""
        try:
            value = _PARSERS[self.kind](self, raw)
        except InvalidArgument:
            raise
        except (TypeError, ValueError):
            raise self.bad(raw, _EXPECTED.get(self.kind, "wrong type")) from None
        if self.required and value == "":
            raise self.bad(raw, "may not be empty")
        if self.not_built and value != self.default:
            raise self.bad(raw, self.not_built)
        return value

    def bad(self, raw: Any, why: str) -> InvalidArgument:
        shown = "***" if self.secret else repr(raw)
        return InvalidArgument(f"{self.name}={shown} is not valid: {why}")


def _str(key: Key, raw: Any) -> str:
    if not isinstance(raw, str):
        raise key.bad(raw, "expected text")
    if len(raw) > 1024 or any(ord(c) < 32 for c in raw):
        raise key.bad(raw, "too long or has control characters")
    return raw


def _int(key: Key, raw: Any) -> int:
    if isinstance(raw, bool):
        raise key.bad(raw, "expected a whole number")
    if isinstance(raw, str):
        raw = raw.strip()
    value = int(raw)
    _range(key, raw, value)
    return value


def _float(key: Key, raw: Any) -> float:
    if isinstance(raw, bool):
        raise key.bad(raw, "expected a number")
    value = float(raw)
    if not math.isfinite(value):
        raise key.bad(raw, "expected a finite number")
    _range(key, raw, value)
    return value


def _range(key: Key, raw: Any, value: float) -> None:
    if key.minimum is not None and value < key.minimum:
        raise key.bad(raw, f"must be at least {key.minimum:g}")
    if key.maximum is not None and value > key.maximum:
        raise key.bad(raw, f"must be at most {key.maximum:g}")


def _bool(key: Key, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise key.bad(raw, "expected true or false")


def _path(key: Key, raw: Any) -> str:
    text = _str(key, raw).strip()
    if text == "":
        return ""
    bad = sorted(set(text) & _FORBIDDEN_PATH_CHARS)
    if bad:
        raise key.bad(raw, f"a path may not contain {' '.join(repr(c) for c in bad)}")
    if not (text.startswith("/") or _WINDOWS_ABS.match(text)):
        raise key.bad(raw, r"expected an absolute path such as C:\Backups or /srv/backups")
    return text


def _cron(key: Key, raw: Any) -> str:
    from croniter import croniter

    text = " ".join(_str(key, raw).split())
    if len(text.split()) != 5 or not croniter.is_valid(text):
        raise key.bad(raw, "expected a 5-field cron expression such as '0 21 * * *'")
    if not fires(text):
        raise key.bad(raw, f"it never fires (no time within {CRON_HORIZON_YEARS} years)")
    return text


def fires(expression: str, *, now: dt.datetime | None = None) -> bool:
    """Whether a valid cron expression has a next time within CRON_HORIZON_YEARS of `now`.

    croniter gives up by itself after `max_years_between_matches` years without a
    match (CroniterBadDateError), so this search is bounded whatever the expression.
    """
    from croniter import CroniterBadDateError, croniter

    start = now or dt.datetime.now(dt.UTC)
    try:
        nxt = croniter(expression, start, max_years_between_matches=CRON_HORIZON_YEARS).get_next(
            dt.datetime
        )
    except CroniterBadDateError:
        return False
    return bool(nxt - start <= dt.timedelta(days=366 * CRON_HORIZON_YEARS))


def _choice(key: Key, raw: Any) -> str:
    text = _str(key, raw).strip().lower()
    if text not in key.choices:
        raise key.bad(raw, f"expected one of {', '.join(key.choices)}")
    return text


def _window(key: Key, raw: Any) -> str:
    text = _str(key, raw).strip()
    try:
        UploadWindow.parse(text)
    except InvalidArgument:
        raise key.bad(raw, "expected HH:MM-HH:MM (24 h, local time) or empty for always") from None
    return text


def _host(key: Key, raw: Any) -> str:
    text = _str(key, raw).strip()
    found = _HOST.match(text)
    if not found:
        raise key.bad(raw, "expected a host name or address, optionally host/port")
    if found.group(1) is not None and not 1 <= int(found.group(1)) <= 65535:
        raise key.bad(raw, "the port must be between 1 and 65535")
    return text


def _url(key: Key, raw: Any) -> str:
    text = _str(key, raw).strip()
    if text == "":
        return ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise key.bad(raw, "expected an http:// or https:// URL")
    try:
        _ = parts.port
    except ValueError:
        raise key.bad(raw, "the URL's port is not a number") from None
    return text


def _emails(key: Key, raw: Any) -> str:
    text = _str(key, raw)
    found = [a.strip() for a in text.split(",") if a.strip()]
    for address in found:
        if not _EMAIL.match(address):
            raise key.bad(raw, f"{address!r} is not an e-mail address")
    return ", ".join(found)


def _hhmm(key: Key, raw: Any) -> str:
    text = _str(key, raw).strip()
    if text and not _HHMM.match(text):
        raise key.bad(raw, "expected HH:MM (24 h, UTC) or empty for never")
    return text


def _recovery_key(key: Key, raw: Any) -> str:
    """A fleet recovery public key (`ssrk1:...`, from `storesafe keys create`), or empty."""
    from common.vault.errors import VaultError
    from common.vault.keys import FleetPublicKey

    text = _str(key, raw).strip()
    if not text:
        return ""
    try:
        return FleetPublicKey.parse(text).text
    except VaultError as err:
        raise key.bad(raw, err.message) from None


_EXPECTED = {"int": "expected a whole number", "float": "expected a number"}

_PARSERS: dict[str, Callable[[Key, Any], Value]] = {
    "str": _str,
    "int": _int,
    "float": _float,
    "bool": _bool,
    "path": _path,
    "cron": _cron,
    "choice": _choice,
    "window": _window,
    "host": _host,
    "url": _url,
    "emails": _emails,
    "hhmm": _hhmm,
    "recovery_key": _recovery_key,
}

# Where and when the server tells people about status changes (server/alerting/).
# Webhook URLs carry their credential in the path, so they are secrets.
ALERT_KEYS = (
    Key(
        "alerts.webhook_url",
        "url",
        "",
        "Generic JSON webhook for alerts (http/https); empty: none.",
        secret=True,
        server_only=True,
    ),
    Key(
        "alerts.slack_url",
        "url",
        "",
        "Slack incoming-webhook URL for alerts; empty: none.",
        secret=True,
        server_only=True,
    ),
    Key(
        "alerts.teams_url",
        "url",
        "",
        "Microsoft Teams Workflows webhook URL for alerts; empty: none.",
        secret=True,
        server_only=True,
    ),
    Key(
        "alerts.email_to",
        "emails",
        "",
        "Comma-separated e-mail addresses for alerts; empty: none.",
        server_only=True,
    ),
    Key("alerts.smtp_host", "str", "", "SMTP server for alert e-mail.", server_only=True),
    Key(
        "alerts.smtp_port",
        "int",
        25,
        "SMTP port.",
        minimum=1,
        maximum=65535,
        server_only=True,
    ),
    Key(
        "alerts.smtp_security",
        "choice",
        "starttls",
        "none, starttls or tls (implicit TLS).",
        choices=("none", "starttls", "tls"),
        server_only=True,
    ),
    Key("alerts.smtp_user", "str", "", "SMTP user; empty: no login.", server_only=True),
    Key(
        "alerts.smtp_password",
        "str",
        "",
        "SMTP password (write-only).",
        secret=True,
        server_only=True,
    ),
    Key(
        "alerts.smtp_from",
        "emails",
        "",
        "Sender address of alert e-mail; empty: storesafe@<smtp host>.",
        server_only=True,
    ),
    Key(
        "alerts.reminder_hours",
        "float",
        24.0,
        "Remind this often while a site stays bad (not offline); 0: never.",
        minimum=0,
        maximum=24 * 31,
        server_only=True,
    ),
    Key(
        "alerts.offline_grace_minutes",
        "float",
        60.0,
        "Alert an offline site only after it has been offline this long.",
        minimum=0,
        maximum=60 * 24 * 14,
        server_only=True,
    ),
    Key(
        "alerts.digest_time",
        "hhmm",
        "08:00",
        "When the daily digest of sites not ok is sent (HH:MM UTC); empty: no digest.",
        server_only=True,
    ),
)

KEYS: dict[str, Key] = {
    k.name: k
    for k in (
        Key(
            "firebird.database",
            "path",
            "",
            "The live database file, as the Firebird server sees it.",
        ),
        Key("firebird.host", "host", "localhost", "Firebird server host (host or host/port)."),
        Key("firebird.user", "str", "SYSDBA", "Firebird user for backups.", required=True),
        Key("firebird.password", "str", "", "Firebird password (write-only).", secret=True),
        Key(
            "firebird.client_library",
            "path",
            "",
            "fbclient library path; empty: found automatically.",
        ),
        Key("validate.schedule", "cron", "0 3 * * 0", "Online validation of the live database."),
        Key("backup.dir", "path", "", "Where finished backups are kept."),
        Key("backup.schedule", "cron", "0 21 * * *", "When backups run (local time)."),
        Key(
            "backup.method",
            "choice",
            "gbak",
            "gbak (logical) or nbackup (physical levels).",
            choices=("gbak", "nbackup"),
        ),
        Key(
            "backup.nbackup_full_schedule",
            "cron",
            "0 21 * * 0",
            "With nbackup: when a level-0 base is taken; other runs are incremental.",
        ),
        Key(
            "backup.recheck_schedule",
            "cron",
            "30 4 * * *",
            "When kept backups are checked against their checksums (a full restore of the "
            "newest good one weekly).",
        ),
        Key(
            "backup.keep_daily",
            "int",
            7,
            "Days whose newest good backup is kept.",
            minimum=0,
            maximum=366,
        ),
        Key(
            "backup.keep_weekly",
            "int",
            4,
            "ISO weeks whose newest good backup is kept.",
            minimum=0,
            maximum=520,
        ),
        Key(
            "backup.keep_monthly",
            "int",
            6,
            "Months whose newest good backup is kept.",
            minimum=0,
            maximum=240,
        ),
        Key("images.dir", "path", "", "The scanned-image folder to keep in sync."),
        Key("images.schedule", "cron", "*/30 * * * *", "When the image folder is synced."),
        Key(
            "images.settle_seconds",
            "int",
            60,
            "Leave files alone until unchanged this long.",
            minimum=0,
            maximum=86400,
        ),
        Key(
            "images.max_pass_minutes",
            "int",
            30,
            "Longest one image-sync pass holds the agent; a longer sync goes on next pass.",
            minimum=1,
            maximum=24 * 60,
        ),
        Key(
            "images.keep_snapshots",
            "int",
            30,
            "Off-site image snapshots: the newest this many are kept on the server.",
            minimum=1,
            maximum=100_000,
            server_only=True,
        ),
        Key(
            "images.keep_days",
            "int",
            90,
            "Off-site image snapshots younger than this many days are kept too.",
            minimum=0,
            maximum=36_600,
            server_only=True,
        ),
        Key(
            "upload.enabled",
            "bool",
            False,
            "Ship each verified backup into the off-site store (needs upload.recovery_key).",
        ),
        Key(
            "upload.max_run_minutes",
            "int",
            60,
            "Longest one upload run lasts before it yields to other jobs (it resumes later).",
            minimum=1,
            maximum=24 * 60,
        ),
        Key(
            "upload.bandwidth_kbps",
            "int",
            0,
            "Upload limit in kbit/s; 0 is unlimited.",
            minimum=0,
            maximum=10_000_000,
        ),
        Key("upload.window", "window", "", "When uploads may run, HH:MM-HH:MM; empty is always."),
        Key(
            "upload.keep_daily",
            "int",
            14,
            "Off-site database copies: days whose newest copy the server keeps.",
            minimum=0,
            maximum=366,
            server_only=True,
        ),
        Key(
            "upload.keep_weekly",
            "int",
            8,
            "Off-site database copies: ISO weeks whose newest copy the server keeps.",
            minimum=0,
            maximum=520,
            server_only=True,
        ),
        Key(
            "upload.keep_monthly",
            "int",
            12,
            "Off-site database copies: months whose newest copy the server keeps.",
            minimum=0,
            maximum=240,
            server_only=True,
        ),
        Key(
            "upload.recovery_key",
            "recovery_key",
            "",
            "The fleet recovery public key (ssrk1:..., from `storesafe keys create`) "
            "that each site's data key is sealed to; image sync needs it.",
        ),
        Key(
            "status.stale_after_hours",
            "float",
            26.0,
            "Stale after this long without a verified backup.",
            minimum=0.1,
            maximum=24 * 366,
        ),
        Key(
            "status.offline_after_minutes",
            "float",
            15.0,
            "Offline after this long without a check-in.",
            minimum=1,
            maximum=60 * 24 * 30,
        ),
        Key(
            "status.image_sync_stale_hours",
            "float",
            26.0,
            "Warning after this long without a successful image sync (once images.dir is set).",
            minimum=0.1,
            maximum=24 * 366,
        ),
        Key(
            "status.offsite_lag_hours",
            "float",
            30.0,
            "Warning when the off-site copy lags the last good backup by more than this "
            "(once upload.enabled is on).",
            minimum=0.1,
            maximum=24 * 366,
        ),
        *ALERT_KEYS,
    )
}

MASK = "********"


def key(name: str) -> Key:
    """The key named `name`, or a clear error naming the nearest known keys."""
    found = KEYS.get(name)
    if found is None:
        prefix = name.split(".", maxsplit=1)[0]
        near = [k for k in KEYS if k.startswith(prefix + ".")] or list(KEYS)
        raise InvalidArgument(f"unknown configuration key {name!r}; known: {', '.join(near)}")
    return found


def validate(values: Mapping[str, Any]) -> dict[str, Value]:
    """Parse every key=value; raise on the first unknown key or bad value."""
    return {name: key(name).parse(raw) for name, raw in values.items()}


def settable(name: str) -> Key:
    """The key named `name`, if a technician may set it now (`config set`)."""
    found = key(name)
    if found.not_built:
        raise InvalidArgument(f"{name} cannot be set: {found.not_built}")
    return found


def agent_values(values: Mapping[str, Value]) -> dict[str, Value]:
    """The values an agent may receive: server-only keys (alert destinations) left out."""
    return {k: v for k, v in values.items() if not (k in KEYS and KEYS[k].server_only)}


def defaults() -> dict[str, Value]:
    return {k.name: k.default for k in KEYS.values()}


def text(value: Value) -> str:
    """`value` written the way `config set` takes it: `true`, `14`, `26`, `0.5`, `0 21 * * *`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def shown_as_typed(name: str, stored: str) -> str:
    """A value stored as text (older servers wrote `True`, `30.0`) in `config set` syntax.

    Only the value's form is read, not whether it may be set now: history shows
    what was set then. Text that does not parse is shown as it is.
    """
    found = KEYS.get(name)
    if found is None:
        return stored
    try:
        return text(_PARSERS[found.kind](found, stored))
    except (InvalidArgument, TypeError, ValueError):
        return stored


def masked(name: str, value: Value) -> Value:
    """The value as it may be shown or logged."""
    if KEYS[name].secret if name in KEYS else False:
        return MASK if value else ""
    return value
