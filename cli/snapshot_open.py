"""Finding a snapshot of the off-site store and opening it with the fleet key file.

The key file opens the site's data key that the snapshot names (ListSiteKeys);
that key opens the snapshot record and its manifest parts, fetched in batches,
every entry checked by the vault. Image and database restores both start here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from cli.models import SealedSnapshotRecord, SiteDataKey, SnapshotSummary
from cli.restore_fetch import BATCH_IDS
from common.errors import FailedPrecondition, NotFound
from common.vault.datakey import open_data_key
from common.vault.errors import BadKeyText, VaultError, WrongKey
from common.vault.keys import FleetPrivateKey
from common.vault.sitekeys import SiteKeys
from common.vault.snapshot import Snapshot, open_record, open_snapshot

SHORT_ID = 12


class Source(Protocol):
    """What a restore asks the server for (the admin client has these calls)."""

    def list_snapshots(
        self, site: str, kind: str | None = None, limit: int = 50
    ) -> list[SnapshotSummary]: ...

    def get_snapshot(
        self, site: str, snapshot_id: str = "", kind: str | None = None, backup_run_id: str = ""
    ) -> SealedSnapshotRecord: ...

    def list_site_keys(self, site: str) -> list[SiteDataKey]: ...

    def fetch_chunks(self, site: str, ids: Sequence[str]) -> Iterator[tuple[str, bytes]]: ...


def site_keys(source: Source, site: str, key: FleetPrivateKey, data_key_id: str) -> SiteKeys:
    """The site's keys from the data key `data_key_id`, opened with the key file's key."""
    held = [k for k in source.list_site_keys(site) if k.data_key_id == data_key_id]
    if not held:
        raise FailedPrecondition(
            f"the server holds no data key {data_key_id} for site {site}: "
            "the snapshot cannot be opened"
        )
    return SiteKeys.derive(site, open_data_key(held[-1].sealed_key, site, key))


def open_sealed(source: Source, keys: SiteKeys, sealed: SealedSnapshotRecord) -> Snapshot:
    """The snapshot's entries, its record and manifest parts fetched and checked."""
    snapshot_id = sealed.snapshot.snapshot_id
    try:
        _, _, _, parts = open_record(keys, snapshot_id, sealed.record)
        blobs: dict[str, bytes] = {}
        for at in range(0, len(parts), BATCH_IDS):
            batch = list(dict.fromkeys(parts[at : at + BATCH_IDS]))
            try:
                blobs.update(source.fetch_chunks(keys.site, batch))
            except NotFound as err:
                raise FailedPrecondition(f"a manifest part is missing ({err.message})") from None

        def fetch(part: str) -> bytes:
            if part not in blobs:
                raise FailedPrecondition(f"manifest part {part} was not sent by the server")
            return blobs[part]

        return open_snapshot(keys, snapshot_id, sealed.record, fetch)
    except (VaultError, FailedPrecondition) as err:
        if isinstance(err, WrongKey | BadKeyText):
            raise
        raise FailedPrecondition(
            f"snapshot {snapshot_id[:SHORT_ID]} of site {keys.site} cannot be opened, "
            f"nothing was written: {err.message}"
        ) from None
