"""The fleet at a glance: sites per status and configuration rollout lag, from the cache."""

from __future__ import annotations

from collections import Counter

from server.domain.records import SiteView
from server.domain.status import Status
from server.metrics import FleetFigures
from server.services.fleet import FleetQueries
from server.services.push import ConfigHub


def behind(view: SiteView) -> bool:
    """The site has not applied the configuration revision it should run."""
    return view.config_revision_desired > view.row.config_revision_applied


def figures(views: list[SiteView], hub: ConfigHub) -> FleetFigures:
    counts = Counter(v.status.status.value for v in views)
    return FleetFigures(
        sites_by_status={s.value: counts.get(s.value, 0) for s in Status},
        agent_streams=hub.stream_count,
        rollout_lag_sites=sum(1 for v in views if behind(v)),
        desired_revision=hub.snapshot.revision,
    )


async def fleet_figures(fleet: FleetQueries, hub: ConfigHub) -> FleetFigures:
    """Computed from the per-replica site cache: what changed since the last look costs,
    not the fleet size."""
    return figures(await fleet.list_sites(), hub)
