"""What a notification says: the Notice stored with each delivery, and its plain text."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from common.clock import iso
from server.alerting.policy import Kind

DIGEST_LINES_SHOWN = 50  # chat messages have size limits; the webhook gets every site


@dataclasses.dataclass(frozen=True)
class DigestLine:
    site: str
    group: str
    status: str
    problem: str


@dataclasses.dataclass(frozen=True)
class Notice:
    """One notification's content, independent of the channel."""

    kind: Kind
    at: dt.datetime
    site: str = ""
    group: str = ""
    status_from: str = ""
    status_to: str = ""
    since: dt.datetime | None = None
    problems: tuple[str, ...] = ()
    digest: tuple[DigestLine, ...] = ()

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": str(self.kind),
                "at": iso(self.at),
                "site": self.site,
                "group": self.group,
                "status_from": self.status_from,
                "status_to": self.status_to,
                "since": iso(self.since),
                "problems": list(self.problems),
                "digest": [dataclasses.astuple(d) for d in self.digest],
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Notice:
        d: dict[str, Any] = json.loads(text)
        return cls(
            kind=Kind(d["kind"]),
            at=_time(d["at"]) or dt.datetime.fromtimestamp(0, dt.UTC),
            site=d["site"],
            group=d["group"],
            status_from=d["status_from"],
            status_to=d["status_to"],
            since=_time(d["since"]),
            problems=tuple(d["problems"]),
            digest=tuple(DigestLine(*line) for line in d["digest"]),
        )


def _time(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text)


def title(n: Notice) -> str:
    """One line that says it all (chat fallback text, e-mail subject)."""
    if n.kind is Kind.TRANSITION:
        return f"StoreSafe: {n.site} is {n.status_to.upper()} (was {n.status_from})"
    if n.kind is Kind.REMINDER:
        return f"StoreSafe: {n.site} is still {n.status_to.upper()} (since {_when(n.since)})"
    if n.kind is Kind.RESOLVED:
        return f"StoreSafe: {n.site} is ok again (was {n.status_from})"
    return f"StoreSafe daily digest: {len(n.digest)} site(s) not ok"


def lines(n: Notice, *, limit: int | None = DIGEST_LINES_SHOWN) -> list[str]:
    """The details, one per line: the site's problems, or the digest's sites."""
    if n.kind is not Kind.DIGEST:
        return list(n.problems) or ["no problems remain"]
    shown = n.digest if limit is None else n.digest[:limit]
    out = [f"{d.site} ({d.group}): {d.status} - {d.problem}" for d in shown]
    if len(shown) < len(n.digest):
        out.append(f"... and {len(n.digest) - len(shown)} more (storesafe sites --status ...)")
    return out


def plain_text(n: Notice) -> str:
    """The e-mail body."""
    head = [title(n), ""]
    if n.site:
        head.append(f"Site: {n.site} (group {n.group})")
    head.append(f"At: {_when(n.at)}")
    return "\n".join([*head, "", *(f"- {line}" for line in lines(n, limit=None))]) + "\n"


def _when(when: dt.datetime | None) -> str:
    if when is None:
        return "unknown"
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
