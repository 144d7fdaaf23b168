"""A snapshot's references checked against the chunk index: one aggregate row per batch.

A commit names every chunk its snapshot needs (about 25,000 for 20,000 images), and
each must be stored. Read row by row, each check moved 25,000 rows through SQLAlchemy;
here a batch of ids costs one row (how many are stored, their bytes, how many are
condemned), and only a batch that is short or holds condemned chunks is read id by id
(chunks lost from the store, or garbage collection at work: both rare).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from sqlalchemy import Connection, bindparam, func, select, update

from server.domain.store_gc import STORED
from server.state.tables import CHUNKS

_IN_BATCH = 500  # ids per IN (...) query

_WHERE = (
    CHUNKS.c.site_id == bindparam("b_site"),
    CHUNKS.c.chunk_id.in_(bindparam("ids", expanding=True)),
    CHUNKS.c.state == STORED,
)
_TALLY = select(
    func.count(), func.coalesce(func.sum(CHUNKS.c.size), 0), func.count(CHUNKS.c.condemned_at)
).where(*_WHERE)
_ROWS = select(CHUNKS.c.chunk_id, CHUNKS.c.condemned_at).where(*_WHERE)
_RESCUE = (
    update(CHUNKS)
    .where(*_WHERE, CHUNKS.c.condemned_at.is_not(None))
    .values(condemned_at=None)
    .returning(CHUNKS.c.chunk_id)
)


@dataclasses.dataclass(frozen=True)
class Tally:
    """What the index holds of a set of references."""

    missing: list[str]  # not stored: being deleted, or not in the site's index
    condemned: list[str]  # stored, and condemned by garbage collection
    stored_bytes: int  # of those stored


def tally(conn: Connection, site_id: int, ids: Sequence[str]) -> Tally:
    """The distinct `ids` as the site's index holds them (missing ones in the order given)."""
    missing: list[str] = []
    condemned: list[str] = []
    stored_bytes = 0
    for batch in batches(ids):
        params = {"b_site": site_id, "ids": batch}
        stored, size, condemned_count = conn.execute(_TALLY, params).one()
        stored_bytes += int(size)
        if stored == len(batch) and not condemned_count:
            continue
        found = {r.chunk_id: r.condemned_at is not None for r in conn.execute(_ROWS, params)}
        missing += [one for one in batch if one not in found]
        condemned += [one for one in batch if found.get(one)]
    return Tally(missing, condemned, stored_bytes)


def rescue(conn: Connection, site_id: int, ids: Sequence[str]) -> set[str]:
    """Clear the condemnation of those of `ids` still stored and condemned; those cleared
    (their rows locked as updated, until the transaction ends)."""
    rescued: set[str] = set()
    for batch in batches(ids):
        rows = conn.execute(_RESCUE, {"b_site": site_id, "ids": batch})
        rescued.update(r.chunk_id for r in rows)
    return rescued


def batches(ids: Sequence[str]) -> list[list[str]]:
    """The distinct ids in groups small enough for one IN (...)."""
    unique = list(dict.fromkeys(ids))
    return [unique[at : at + _IN_BATCH] for at in range(0, len(unique), _IN_BATCH)]
