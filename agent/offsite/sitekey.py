"""The site data key registered with the store before anything is sealed under it.

Every uploader (image sync, database upload) calls `site_keys` at the start
of a run: it loads (or makes) the site's data key from the state dir and,
when the configured recovery key does not hold it yet, registers it sealed
to that key with PutSiteKey, once.
"""

from __future__ import annotations

import logging

from agent.datakey import DataKeyFile
from agent.domain.offsite import StoreLink
from common.vault import FleetPublicKey, SiteKeys

log = logging.getLogger(__name__)


async def site_keys(link: StoreLink, key_file: DataKeyFile, recovery: FleetPublicKey) -> SiteKeys:
    """The site's keys, their data key registered under `recovery` on the server."""
    keys = key_file.keys()
    registration = key_file.registration(recovery)
    if registration is not None:
        await link.put_site_key(registration)
        key_file.registered(registration.recovery_key_fingerprint)
        log.info("site data key registered under recovery key %s", recovery.fingerprint)
    return keys
