"""The configuration merge: fleet, group and site layers over the key defaults, at one moment.

Pure (kopia keeps its policy merge apart from persistence the same way): the
config state stores the layers, server/services/push.py holds the current
snapshot, and server/services/config.py changes it.
"""

from __future__ import annotations

import dataclasses

from common import config_schema
from common.config_schema import Value

FLEET, GROUP, SITE = "fleet", "group", "site"
SCOPES = (FLEET, GROUP, SITE)


@dataclasses.dataclass(frozen=True)
class Effective:
    value: Value
    layer: str  # "default", "fleet", "group:<g>", "site:<s>"


@dataclasses.dataclass(frozen=True)
class ConfigSnapshot:
    """All layers at one moment; answers per site without touching the database."""

    layers: dict[tuple[str, str], dict[str, Value]]
    newest: dict[tuple[str, str], int]

    @classmethod
    def empty(cls) -> ConfigSnapshot:
        return cls({}, {})

    @property
    def revision(self) -> int:
        return max(self.newest.values(), default=0)

    def desired_revision(self, site: str, group: str) -> int:
        return max(
            self.newest.get((FLEET, ""), 0),
            self.newest.get((GROUP, group), 0),
            self.newest.get((SITE, site), 0),
        )

    def effective(self, site: str, group: str) -> dict[str, Effective]:
        out = {k: Effective(v, "default") for k, v in config_schema.defaults().items()}
        for scope, target, label in (
            (FLEET, "", "fleet"),
            (GROUP, group, f"group:{group}"),
            (SITE, site, f"site:{site}"),
        ):
            for k, v in self.layers.get((scope, target), {}).items():
                out[k] = Effective(v, label)
        return out

    def lookup(self, site: str, group: str, key: str) -> Value | None:
        """The value a layer sets for the site, or None where only the default applies."""
        for layer in ((SITE, site), (GROUP, group), (FLEET, "")):
            found = self.layers.get(layer)
            if found and key in found:
                return found[key]
        return None

    def value(self, site: str, group: str, key: str) -> Value:
        found = self.lookup(site, group, key)
        return config_schema.KEYS[key].default if found is None else found
