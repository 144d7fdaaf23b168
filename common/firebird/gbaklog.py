"""What gbak's verbose log says: records per table, and whether a restore really finished."""

from __future__ import annotations

import collections
import re

from common.firebird.errors import RestoreFailed

_WRITING = re.compile(r"writing data for table (.+?)\s*$")
_WRITTEN = re.compile(r"^\s*(\d+) records written")
_RESTORING = re.compile(r"restoring data for table (.+?)\s*$")
_RESTORED = re.compile(r"^\s*(\d+) records restored")


class GbakLog:
    """Per-table record counts of a verbose gbak log, read line by line in constant memory.

    gbak prints a running total every 10,000 records ("10000 records written",
    "20000 records written", ...), so the last figure after a table's line wins.
    """

    def __init__(self, *, restore: bool = False) -> None:
        self._table_re, self._count_re = (
            (_RESTORING, _RESTORED) if restore else (_WRITING, _WRITTEN)
        )
        self.counts: dict[str, int] = {}
        self.tail: collections.deque[str] = collections.deque(maxlen=8)
        self._table: str | None = None

    def feed(self, raw: str) -> None:
        self.tail.append(raw)
        line = raw[5:] if raw.startswith("gbak:") else raw
        if m := self._table_re.search(line):
            self._table = m.group(1).strip().strip('"')
            self.counts.setdefault(self._table, 0)
        elif self._table is not None and (m := self._count_re.match(line)):
            self.counts[self._table] = int(m.group(1))
        elif line.strip() and not line.startswith(" "):
            self._table = None  # a new section: counts that follow are not this table's


def check_restored(lines: list[str], *, what: str = "the test restore") -> None:
    """Raise RestoreFailed unless the tail of a verbose restore log has gbak's closing line.

    Firebird 3 can end a restore service without an error when gbak stops early
    (seen when its input ends too soon), so the absence of an error is not enough.
    """
    if not any("finishing, closing, and going home" in line for line in lines):
        raise RestoreFailed(
            f"{what[0].upper()}{what[1:]} ended without gbak's closing line; it is incomplete."
        )
