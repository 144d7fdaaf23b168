"""Portable writes for the writer-process tests: module-level classes, so a spawned
writer process can unpickle them (it imports this module by name)."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Connection, text

from common.errors import PermissionDenied


class Insert:
    """INSERT one row into t(k, v); a None value breaks the NOT NULL constraint."""

    portable = True

    def __init__(self, k: int, v: str | None = "x") -> None:
        self.k = k
        self.v = v

    def __call__(self, conn: Connection) -> int:
        conn.execute(text("INSERT INTO t (k, v) VALUES (:k, :v)"), {"k": self.k, "v": self.v})
        return self.k


class WhereAmI:
    """Returns the id of the process that ran it."""

    portable = True

    def __call__(self, conn: Connection) -> int:
        return os.getpid()


class Deny:
    """Fails with PermissionDenied (a typed error must come back from the writer process)."""

    portable = True

    def __call__(self, conn: Connection) -> None:
        raise PermissionDenied("not yours")


class Unsendable:
    """Returns a live result, which does not pickle back to the writer thread."""

    portable = True

    def __call__(self, conn: Connection) -> Any:
        return conn.execute(text("SELECT 1"))
