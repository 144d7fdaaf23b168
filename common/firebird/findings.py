"""What Firebird's validation of a restored copy found: errors, warnings and the lines that say so.

`svc.repair(..., read_only_validation=1)` raises OperationalError (gdscode
335740952) with a "Summary of validation errors" whenever validation found
anything, warnings alone included, and its per-category counters are not a
reliable split: a record-level warning may be summed as a "record level
error". Firebird's own verdict is the line it writes to firebird.log at the
end of each validation, for each database:

    <host>\tFri Dec  4 20:06:54 2026
    \tDatabase: /var/tmp/x/scratch.fdb
    \tWarning: Pointer page 222 {sequence 0} bits {0x01 full} are not consistent ...
    ...
    \tValidation finished: 0 errors, 2 warnings, 0 fixed

So the counts come from that line for the scratch database (its path is
unique), and only when the log has no such entry from the summary. Errors are
damage; warnings (swept bits, pointer page bits, orphan back versions left by
transactions in flight) are figures to report, not a failed verification.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

MAX_QUOTED = 3
QUOTE_CHARS = 300

_FINISHED = re.compile(
    r"Validation finished:\s*(\d+)\s+errors?,\s*(\d+)\s+warnings?(?:,\s*(\d+)\s+fixed)?",
    re.IGNORECASE,
)
_SUMMARY = re.compile(r"Number of [\w ]+? (errors|warnings)\s*:\s*(\d+)", re.IGNORECASE)
_FOUND = re.compile(r"^(Error|Warning):\s*(.+)$")


@dataclasses.dataclass(frozen=True)
class Findings:
    """Counts of one validation and the first lines Firebird wrote about them."""

    errors: int = 0
    warnings: int = 0
    lines: tuple[str, ...] = ()
    source: str = "summary"  # "firebird.log" when the counts come from the log

    @property
    def clean(self) -> bool:
        return not self.errors and not self.warnings

    def describe(self) -> str:
        """`2 errors and 1 warning (Error: ...; Warning: ...)` for a message."""
        text = f"{_plural(self.errors, 'error')} and {_plural(self.warnings, 'warning')}"
        if self.lines:
            quoted = "; ".join(self.lines[:MAX_QUOTED])
            more = f"; +{len(self.lines) - MAX_QUOTED} more" if len(self.lines) > MAX_QUOTED else ""
            text += f" ({_clip(quoted)}{more})"
        return text


def parse_summary(text: str) -> Findings:
    """Counts from the "Summary of validation errors" that `svc.repair` raises with.

    A failure without a summary we understand counts as one error, quoting it.
    """
    errors = warnings = 0
    for kind, count in _SUMMARY.findall(text):
        if kind.lower() == "errors":
            errors += int(count)
        else:
            warnings += int(count)
    if errors == warnings == 0 and "error" in text.lower():
        return Findings(errors=1, lines=(_clip(" ".join(text.split())),))
    return Findings(errors=errors, warnings=warnings)


def parse_log(lines: Iterable[str], database: str) -> Findings | None:
    """The last finished validation of `database` in firebird.log lines, or None."""
    current = ""
    found: list[str] = []
    result: Findings | None = None
    for raw in lines:
        line = raw.strip()
        if line.startswith("Database:"):
            current = line.removeprefix("Database:").strip()
            continue
        if current != database:
            continue
        if line.startswith("Validation started"):
            found = []
        elif m := _FOUND.match(line):
            found.append(f"{m.group(1)}: {m.group(2)}")
        elif m := _FINISHED.search(line):
            result = Findings(
                errors=int(m.group(1)),
                warnings=int(m.group(2)),
                lines=tuple(_errors_first(found)),
                source="firebird.log",
            )
            found = []
    return result


def _errors_first(found: list[str]) -> list[str]:
    return [x for x in found if x.startswith("Error")] + [
        x for x in found if not x.startswith("Error")
    ]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _clip(text: str) -> str:
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 3] + "..."
