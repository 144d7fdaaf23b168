"""The site's data key on the shop PC: made once, kept in the state dir, registered sealed.

The key file (`site-data-key.json`, mode 0600, written atomically) holds the
site, the 32-byte data key (hex) and the fingerprints of the fleet recovery
keys it has been registered under with PutSiteKey. A new recovery key in the
configuration makes `registration` return the key sealed to it, once; the
old registrations stay on the server for the snapshots sealed before. The
data key never leaves this file except sealed to a recovery key.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from agent.domain.offsite import SiteKeyUpload
from agent.settings import write_atomic
from common.errors import FailedPrecondition
from common.vault import FleetPublicKey, SiteKeys, new_data_key, seal_data_key

KEY_FILE = "site-data-key.json"


class KeyFileUnusable(FailedPrecondition):
    code = "agent.data_key_unusable"


class DataKeyFile:
    """The site data key kept in one state dir."""

    def __init__(self, state_dir: Path, site: str) -> None:
        self.path = state_dir / KEY_FILE
        self.site = site
        self._lock = threading.Lock()

    def keys(self) -> SiteKeys:
        """The site's keys, from the key file; a new data key on first use."""
        with self._lock:
            data = self._load()
            if data is None:
                data = {"site": self.site, "data_key": new_data_key().hex(), "registered": []}
                self._save(data)
            return SiteKeys.derive(self.site, bytes.fromhex(data["data_key"]))

    def registration(self, recovery: FleetPublicKey) -> SiteKeyUpload | None:
        """The data key sealed to `recovery`, or None when that key has it registered."""
        keys = self.keys()
        with self._lock:
            data = self._load()
        if data is not None and recovery.fingerprint in data["registered"]:
            return None
        return SiteKeyUpload(
            sealed_key=seal_data_key(self.site, keys.data_key, recovery),
            data_key_id=keys.key_id_hex,
            recovery_key_fingerprint=recovery.fingerprint,
        )

    def registered(self, fingerprint: str) -> None:
        """The server holds the data key sealed to the recovery key `fingerprint`."""
        with self._lock:
            data = self._load()
            if data is None:
                raise KeyFileUnusable(f"the site data key file {self.path} vanished")
            if fingerprint not in data["registered"]:
                data["registered"].append(fingerprint)
                self._save(data)

    def _load(self) -> dict[str, Any] | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KeyFileUnusable(
                f"cannot read the site data key file {self.path} ({exc.strerror})"
            ) from None
        try:
            data = json.loads(raw)
            ok = (
                isinstance(data, dict)
                and isinstance(data.get("data_key"), str)
                and len(bytes.fromhex(data["data_key"])) == 32
                and isinstance(data.get("registered"), list)
            )
        except ValueError:
            ok = False
        if not ok:
            raise KeyFileUnusable(
                f"the site data key file {self.path} is damaged; restore it from a backup of "
                "the state dir (a new key would start the site's off-site history anew)"
            )
        if data.get("site") != self.site:
            raise KeyFileUnusable(
                f"the site data key file {self.path} is of site {data.get('site')!r}, "
                f"this agent is enrolled for {self.site!r}"
            )
        return dict(data)

    def _save(self, data: dict[str, Any]) -> None:
        try:
            write_atomic(self.path, json.dumps(data, indent=1).encode(), mode=0o600)
        except OSError as exc:
            raise KeyFileUnusable(
                f"cannot write the site data key file {self.path} ({exc.strerror})"
            ) from None
