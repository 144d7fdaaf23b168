"""Store checks: which chunks a sampled check reads, and what its findings say.

Sampling (restic's `check --read-data-subset` is the anchor). A chunk id is a keyed
hash, so its first 16 hex digits place it uniformly on a circle of 2**64 positions.
A check of p percent reads one arc of p percent of that circle: the first check of a
site starts at a random point, and each later one starts where the one before ended.
So the sample is random (an attacker who cannot predict the start cannot keep a bad
chunk out of it), and repeated checks cover every chunk: at p percent, every chunk
stored before the first of ceil(100 / p) consecutive checks is read by one of them.
restic's `n/t` subsets rotate the same way by hand; its random percent does not
promise coverage. Chunks a check found damaged or missing are re-read first by every
later check, whatever the arc, until one reads them fine.

Hex digits sort like the numbers they write, so an arc is one or two ranges of chunk
ids, which the index answers from its primary key without reading the rest.
"""

from __future__ import annotations

import dataclasses
import math

from server.domain.details import MAX_NAMED_CHUNKS
from server.domain.rules import bad

CIRCLE = 2**64
_DIGITS = 16

DAMAGED = "damaged"
MISSING = "missing"
NAMED_IN_SUMMARY = 5


def check_percent(value: float) -> float:
    """The share to read, in percent: 0 (unset) means 100; otherwise more than 0, at
    most 100, and a finite number."""
    if not math.isfinite(value):
        raise bad("sample_percent", "is not a finite number")
    if value == 0:
        return 100.0
    if not 0 < value <= 100:
        raise bad(
            "sample_percent", f"{value:g} is not a share in percent (more than 0, at most 100)"
        )
    return value


def position(text: str, first: int) -> int:
    """A stored cursor as a position on the circle; `first` (a random one, drawn by the
    caller) when there is none yet."""
    if len(text) == _DIGITS:
        try:
            return int(text, 16)
        except ValueError:
            pass
    return first % CIRCLE


def cursor(pos: int) -> str:
    return f"{pos % CIRCLE:0{_DIGITS}x}"


@dataclasses.dataclass(frozen=True)
class Arc:
    """The part of the circle one check reads: chunk ids in [low, high) ranges (high None:
    to the end)."""

    start: int
    percent: float

    @property
    def width(self) -> int:
        return min(CIRCLE, math.ceil(CIRCLE * self.percent / 100))

    @property
    def next_start(self) -> int:
        return (self.start + self.width) % CIRCLE

    def ranges(self) -> list[tuple[str, str | None]]:
        if self.width >= CIRCLE:
            return [("", None)]
        end = self.start + self.width
        if end <= CIRCLE:
            return [(cursor(self.start), None if end == CIRCLE else cursor(end))]
        return [(cursor(self.start), None), ("", cursor(end - CIRCLE))]

    def holds(self, chunk_id: str) -> bool:
        at = int(chunk_id[:_DIGITS], 16)
        return (at - self.start) % CIRCLE < self.width


@dataclasses.dataclass(frozen=True)
class Findings:
    """What one check of one site found: chunk ids by what is wrong with them, and the
    snapshots that reference them (id, kind, backup run id)."""

    damage: dict[str, str]  # chunk id -> DAMAGED | MISSING
    broken: list[tuple[str, str, str]]

    @property
    def damaged(self) -> list[str]:
        return sorted(c for c, s in self.damage.items() if s == DAMAGED)

    @property
    def missing(self) -> list[str]:
        return sorted(c for c, s in self.damage.items() if s == MISSING)

    @property
    def broken_runs(self) -> list[str]:
        return sorted({run for _, kind, run in self.broken if kind == "database" and run})

    def details(self, percent: float, checked: int, checked_bytes: int) -> dict[str, object]:
        """StoreCheckDetails in its stored JSON form (64-bit integers as text)."""
        out: dict[str, object] = {
            "sample_percent": percent,
            "chunks_checked": str(checked),
            "bytes_checked": str(checked_bytes),
            "damaged_count": str(len(self.damaged)),
            "missing_count": str(len(self.missing)),
        }
        named = {
            "damaged_chunks": self.damaged[:MAX_NAMED_CHUNKS],
            "missing_chunks": self.missing[:MAX_NAMED_CHUNKS],
            "broken_snapshots": sorted(s for s, _, _ in self.broken),
            "broken_backup_runs": self.broken_runs,
        }
        out.update({k: v for k, v in named.items() if v})
        return out

    def summary(self) -> str:
        """What the damage breaks, for the site's status ("" when nothing is wrong)."""
        if not self.damage:
            return ""
        runs = self.broken_runs
        images = sum(1 for _, kind, _ in self.broken if kind != "database")
        parts = []
        if runs:
            parts.append(f"{_named(runs, 'backup')} cannot be restored")
        if images:
            parts.append(f"{images} image snapshot(s) cannot be fully restored")
        if not parts:
            return "no snapshot references them"
        return "; ".join(parts)

    def error_message(self) -> str:
        if not self.damage:
            return ""
        return (
            f"{len(self.damaged)} chunk(s) damaged and {len(self.missing)} missing in the "
            f"off-site store"
        )


def _named(items: list[str], noun: str) -> str:
    shown = ", ".join(items[:NAMED_IN_SUMMARY])
    more = f" and {len(items) - NAMED_IN_SUMMARY} more" if len(items) > NAMED_IN_SUMMARY else ""
    return f"{noun}{'s' if len(items) > 1 else ''} {shown}{more}"
