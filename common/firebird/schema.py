"""The user tables and indices of a database, and exact row counts per table."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Schema:
    """User tables and their indices, as sorted tuples (comparable across copies)."""

    tables: tuple[str, ...]
    indices: tuple[str, ...]  # "TABLE.INDEX"

    def differences(self, other: Schema) -> list[str]:
        """Human-readable differences of `other` against self (the expected schema)."""
        out: list[str] = []
        for label, mine, theirs in (
            ("table", self.tables, other.tables),
            ("index", self.indices, other.indices),
        ):
            missing = sorted(set(mine) - set(theirs))
            extra = sorted(set(theirs) - set(mine))
            if missing:
                out.append(f"{label} missing: {', '.join(missing[:5])}")
            if extra:
                out.append(f"{label} unexpected: {', '.join(extra[:5])}")
        return out


def read_schema(con: Any) -> Schema:
    """User tables (no views, no temporary or external tables) and their indices."""
    cur = con.cursor()
    cur.execute(
        "SELECT TRIM(RDB$RELATION_NAME) FROM RDB$RELATIONS"
        " WHERE COALESCE(RDB$SYSTEM_FLAG, 0) = 0 AND RDB$VIEW_BLR IS NULL"
        " AND RDB$EXTERNAL_FILE IS NULL AND COALESCE(RDB$RELATION_TYPE, 0) = 0"
    )
    tables = tuple(sorted(str(r[0]) for r in cur.fetchall()))
    cur.execute(
        "SELECT TRIM(RDB$RELATION_NAME), TRIM(RDB$INDEX_NAME) FROM RDB$INDICES"
        " WHERE COALESCE(RDB$SYSTEM_FLAG, 0) = 0"
    )
    wanted = set(tables)
    indices = tuple(sorted(f"{r[0]}.{r[1]}" for r in cur.fetchall() if r[0] in wanted))
    con.commit()
    return Schema(tables=tables, indices=indices)


def count_rows(con: Any, tables: tuple[str, ...]) -> dict[str, int]:
    """Exact row counts per table, all read in one snapshot transaction."""
    counts: dict[str, int] = {}
    cur = con.cursor()
    for table in tables:
        quoted = '"' + table.replace('"', '""') + '"'
        cur.execute(f"SELECT COUNT(*) FROM {quoted}")  # noqa: S608 - name from RDB$RELATIONS
        counts[table] = int(cur.fetchone()[0])
    con.commit()
    return counts
