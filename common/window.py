"""The upload window (`upload.window`, HH:MM-HH:MM in the agent's local time; empty is always).

A window may wrap midnight (22:00-06:00). Start and end equal means the whole day. The
times of a day that a clock change skips or repeats follow the wall clock: what matters
is the local time the technician typed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from common.errors import InvalidArgument, quote

_TEXT = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
_DAY = 24 * 60


@dataclasses.dataclass(frozen=True)
class UploadWindow:
    """When uploads may run; `start_minute`/`end_minute` are minutes after local midnight,
    both None for always."""

    start_minute: int | None = None
    end_minute: int | None = None
    tz: dt.tzinfo | None = None  # None: the machine's local time zone

    @classmethod
    def parse(cls, text: str, tz: dt.tzinfo | None = None) -> UploadWindow:
        """The window of a config value; InvalidArgument naming the text when malformed."""
        text = text.strip()
        if not text:
            return cls(tz=tz)
        found = _TEXT.match(text)
        if not found:
            raise InvalidArgument(
                f"upload window {quote(text)} is not HH:MM-HH:MM (24 h, local time) or empty"
            )
        h1, m1, h2, m2 = (int(g) for g in found.groups())
        return cls(h1 * 60 + m1, h2 * 60 + m2, tz)

    @property
    def always(self) -> bool:
        return self.start_minute is None or self.start_minute == self.end_minute

    def _local(self, when: dt.datetime) -> dt.datetime:
        if when.tzinfo is None:
            raise ValueError("the upload window needs an aware time")
        return when.astimezone(self.tz)

    def _minute(self, local: dt.datetime) -> float:
        return local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60

    def is_open(self, when: dt.datetime) -> bool:
        if self.always:
            return True
        assert self.start_minute is not None and self.end_minute is not None
        now = self._minute(self._local(when))
        start, end = self.start_minute, self.end_minute
        if start < end:
            return start <= now < end
        return now >= start or now < end

    def seconds_until_open(self, when: dt.datetime) -> float:
        """0 when open now, else the seconds until it next opens."""
        if self.is_open(when):
            return 0.0
        assert self.start_minute is not None
        now = self._minute(self._local(when))
        return ((self.start_minute - now) % _DAY) * 60

    def seconds_until_close(self, when: dt.datetime) -> float | None:
        """None when always open; 0 when closed now; else the seconds until it closes."""
        if self.always:
            return None
        if not self.is_open(when):
            return 0.0
        assert self.end_minute is not None
        now = self._minute(self._local(when))
        return ((self.end_minute - now) % _DAY) * 60

    def describe(self) -> str:
        if self.always:
            return "always"
        assert self.start_minute is not None and self.end_minute is not None
        s, e = self.start_minute, self.end_minute
        return f"{s // 60:02d}:{s % 60:02d}-{e // 60:02d}:{e % 60:02d} local time"
