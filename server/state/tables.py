"""The SQLAlchemy Core tables behind the SQLModel models, for the state modules."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table

from server.db import models


def _t(model: Any) -> Table:
    table: Table = model.__table__
    return table


SITES = _t(models.Site)
AGENTS = _t(models.Agent)
TOKENS = _t(models.EnrollmentToken)
ADMINS = _t(models.AdminToken)
RUNS = _t(models.Run)
AUDIT = _t(models.AuditEntry)
VALUES = _t(models.ConfigValue)
REVISIONS = _t(models.ConfigRevision)
COMMANDS = _t(models.Command)
SITE_KEYS = _t(models.SiteKey)
CHUNKS = _t(models.StoreChunk)
SNAPSHOTS = _t(models.StoreSnapshot)
DAMAGE = _t(models.StoreDamage)
