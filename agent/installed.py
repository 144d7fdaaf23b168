"""The capabilities built into this agent: adding one is a new package and one line here."""

from __future__ import annotations

from collections.abc import Sequence

from agent.capability import CapabilityFactory
from agent.firebird.capability import FirebirdBackup
from agent.images.capability import ImageSync

CAPABILITIES: Sequence[CapabilityFactory] = (FirebirdBackup, ImageSync)
