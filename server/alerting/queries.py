"""The admin's view of alert deliveries: the newest first, with totals by state."""

from __future__ import annotations

import dataclasses

from common.errors import InvalidArgument
from common.names import check_name
from server.alerting.store import AlertStore, DeliveryRecord


@dataclasses.dataclass(frozen=True)
class DeliveryList:
    deliveries: list[DeliveryRecord]
    totals: dict[str, int]


class AlertQueries:
    def __init__(self, store: AlertStore) -> None:
        self._store = store

    async def deliveries(self, *, site: str, limit: int) -> DeliveryList:
        limit = limit or 50
        if not 1 <= limit <= 1000:
            raise InvalidArgument("limit must be between 1 and 1000")
        if site:
            check_name(site, "site")
        found = await self._store.deliveries(site=site, limit=limit)
        return DeliveryList(found, await self._store.totals())
