"""Sample CLI records and a stand-in admin client, for the CLI's unit tests.

The real server is exercised in tests/integration/cli and the real client over
gRPC in tests/unit/cli/test_client*.py; with these, commands and rendering run
against answers held in memory.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cli.client.admin import AdminClient
from cli.client.settings import Settings
from cli.context import Invocation
from cli.main import app
from cli.models import (
    AuditEntry,
    Command,
    ConfigChange,
    ConfigEntry,
    ConfigRevision,
    EnrollmentToken,
    RolloutRow,
    Run,
    SealedSnapshotRecord,
    SiteConfig,
    SiteDataKey,
    SiteDetail,
    SiteSummary,
    SnapshotSummary,
)
from cli.restore_target import Target
from common.errors import NotFound, Unavailable
from tests.support.clock import FakeClock
from tests.support.sealed import Sealed, SealedSite

NOW = dt.datetime(2026, 11, 26, 22, 0, tzinfo=dt.UTC)


def site(name: str = "shop-a", status: str = "ok", **changes: Any) -> SiteSummary:
    """A site summary seen 2 minutes ago with a good backup 3 hours ago."""
    base = SiteSummary(
        site=name,
        group="default",
        status=status,
        last_good_backup_at=NOW - dt.timedelta(hours=3),
        last_backup_at=NOW - dt.timedelta(hours=3),
        last_image_sync_at=None,
        last_seen_at=NOW - dt.timedelta(minutes=2),
        config_revision_desired=3,
        config_revision_applied=3,
        agent_version="0.1.0",
        problems=(),
        hostname="SHOP-A-PC",
    )
    return replace(base, **changes)


def backup_run(**changes: Any) -> Run:
    """A verified gbak backup that finished an hour ago."""
    base = Run(
        id="r-1",
        site="shop-a",
        kind="backup",
        outcome="succeeded",
        started_at=NOW - dt.timedelta(hours=1, minutes=2),
        finished_at=NOW - dt.timedelta(hours=1),
        received_at=NOW - dt.timedelta(hours=1),
        trigger="schedule",
        details={
            "method": "gbak",
            "file": "shop-20261126.fbk.zst",
            "size_compressed": 3 * 1024 * 1024,
            "verification": "passed",
            "verification_message": "",
            "problems": [],
        },
    )
    return replace(base, **changes)


class FakeAdminClient(AdminClient):
    """Answers from memory, or raises `error` on every call."""

    def __init__(self, sites: list[SiteSummary] | None = None, error: Exception | None = None):
        super().__init__(Settings(server="127.0.0.1:7443", token="t"))
        self.sites = sites or []
        self.error = error
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def _seen(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if self.error is not None:
            raise self.error

    def create_token(self, site: str, group: str, ttl: dt.timedelta) -> EnrollmentToken:
        self._seen("create_token", site, group, ttl)
        return EnrollmentToken(site, group, "tok-123", NOW + ttl)

    def list_sites(self, status: str | None = None, group: str | None = None) -> list[SiteSummary]:
        self._seen("list_sites", status, group)
        return [s for s in self.sites if status in (None, s.status) and group in (None, s.group)]

    def get_site(self, site: str) -> SiteDetail:
        self._seen("get_site", site)
        return SiteDetail(summary=self.sites[0], os="Windows 10", last_backup=backup_run())

    def list_runs(self, site: str, kind: str | None = None, limit: int = 20) -> list[Run]:
        self._seen("list_runs", site, kind, limit)
        return [backup_run()]

    def revoke_agents(self, site: str) -> int:
        self._seen("revoke_agents", site)
        return 1

    def list_audit(self, limit: int = 50) -> list[AuditEntry]:
        self._seen("list_audit", limit)
        return [AuditEntry(NOW, "admin", "token.create", "shop-a", "group=default")]


def site_config(**changes: Any) -> SiteConfig:
    """shop-a at revision 5 (agent on 4) with a key from each layer and a set secret."""
    base = SiteConfig(
        site="shop-a",
        desired_revision=5,
        applied_revision=4,
        entries=(
            ConfigEntry("backup.dir", "C:\\Backups", "site:shop-a"),
            ConfigEntry("backup.keep_daily", "10", "group:north"),
            ConfigEntry("backup.schedule", "0 22 * * *", "fleet"),
            ConfigEntry("firebird.password", "********", "site:shop-a", secret=True),
            ConfigEntry("images.dir", "", "default"),
        ),
        refused="",
    )
    return replace(base, **changes)


def revision(number: int = 3, **changes: Any) -> ConfigRevision:
    """A site-layer revision setting backup.dir and the password, an hour ago."""
    base = ConfigRevision(
        revision=number,
        scope="site",
        target="shop-a",
        author="admin",
        at=NOW - dt.timedelta(hours=1),
        changes={"backup.dir": "C:\\Backups", "firebird.password": "********"},
    )
    return replace(base, **changes)


def rollout_row(name: str, state: str = "applied", **changes: Any) -> RolloutRow:
    """A site that should run revision 5, seen 2 minutes ago."""
    applied = 5 if state == "applied" else 4
    base = RolloutRow(name, "default", 5, applied, state, "", NOW - dt.timedelta(minutes=2))
    return replace(base, **changes)


def command(state: str = "queued", **changes: Any) -> Command:
    """A backup-now command created 10 minutes ago."""
    base = Command(
        id="c0ffee00-0000-4000-8000-000000000001",
        site="shop-a",
        kind="backup-now",
        state=state,
        created_at=NOW - dt.timedelta(minutes=10),
        created_by="admin",
    )
    return replace(base, **changes)


class FakeConfigClient(FakeAdminClient):
    """Also answers the configuration and remote-command calls from memory."""

    def set_config(
        self, scope: str, target: str, values: dict[str, str], unset: list[str]
    ) -> ConfigChange:
        self._seen("set_config", scope, target, values, unset)
        layer = f"{scope}:{target}" if target else scope
        return ConfigChange(layer, 6, tuple(sorted([*values, *unset])))

    def get_config(self, site: str) -> SiteConfig:
        self._seen("get_config", site)
        return site_config(site=site)

    def config_history(self, limit: int = 50) -> list[ConfigRevision]:
        self._seen("config_history", limit)
        return [revision(3), revision(2, scope="fleet", target="", changes={"a.b": "1"})]

    def config_rollout(self, group: str | None = None) -> list[RolloutRow]:
        self._seen("config_rollout", group)
        return [
            rollout_row("shop-a"),
            rollout_row("shop-b", "pending"),
            rollout_row("shop-c", "refused", refused="backup.dir is not writable"),
        ]

    def send_command(self, site: str, kind: str) -> str:
        self._seen("send_command", site, kind)
        return command().id

    def list_commands(self, site: str, limit: int = 20) -> list[Command]:
        self._seen("list_commands", site, limit)
        return [command("rejected", message="backup is not configured"), command()]


def invoke(client: FakeAdminClient, *args: str, stdin: str | None = None) -> Result:
    """Run `storesafe ARGS` against `client` at the fixed time NOW."""
    return CliRunner().invoke(
        app,
        list(args),
        input=stdin,
        obj=Invocation(client.settings, FakeClock(NOW), client),
    )


class FakeStoreClient(FakeAdminClient):
    """Serves one site's sealed snapshots and chunks from memory, as the server would.

    `chunks` may be changed by a test (a chunk dropped or altered); `fetches`
    records the ids of each FetchChunks call.
    """

    def __init__(self, site: SealedSite, *snapshots: Sealed) -> None:
        super().__init__([])
        self.sealed_site = site
        self.snapshots = sorted(snapshots, key=lambda s: s.created, reverse=True)
        self.chunks: dict[str, bytes] = {}
        for snap in snapshots:
            self.chunks.update(snap.chunks)
        self.fetches: list[list[str]] = []

    def _summary(self, snap: Sealed) -> SnapshotSummary:
        return SnapshotSummary(
            snapshot_id=snap.snapshot_id,
            kind="images",
            created_at=snap.created,
            committed_at=snap.created + dt.timedelta(minutes=1),
            entries=snap.entries,
            size=snap.size,
            data_key_id=self.sealed_site.data_key_id,
            chunks=len(snap.chunks),
            stored_bytes=sum(len(b) for b in snap.chunks.values()),
        )

    def list_snapshots(
        self, site: str, kind: str | None = None, limit: int = 50
    ) -> list[SnapshotSummary]:
        self._seen("list_snapshots", site, kind, limit)
        return [self._summary(s) for s in self.snapshots[:limit]]

    def get_snapshot(
        self, site: str, snapshot_id: str = "", kind: str | None = None, backup_run_id: str = ""
    ) -> SealedSnapshotRecord:
        self._seen("get_snapshot", site, snapshot_id, kind)
        for snap in self.snapshots:
            if snapshot_id in ("", snap.snapshot_id):
                return SealedSnapshotRecord(self._summary(snap), snap.record)
        raise NotFound(f"site {site} has no snapshot {snapshot_id or 'yet'}")

    def list_site_keys(self, site: str) -> list[SiteDataKey]:
        self._seen("list_site_keys", site)
        s = self.sealed_site
        return [SiteDataKey(s.data_key_id, s.sealed_key, s.fleet.fingerprint, NOW)]

    def fetch_chunks(self, site: str, ids: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        self._seen("fetch_chunks", site, len(ids))
        assert 0 < len(ids) <= 1000, len(ids)
        self.fetches.append(list(ids))
        for chunk_id in ids:
            if chunk_id not in self.chunks:
                raise NotFound(f"the store holds no chunk {chunk_id} for site {site}")
            yield chunk_id, self.chunks[chunk_id]


def pretend_names_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Restores see a target file system that folds case and Unicode form (NTFS, APFS),
    which a Linux test machine's file systems do not."""
    monkeypatch.setattr(Target, "folds_names", lambda self: True)


class FakeBackupStore(FakeStoreClient):
    """Serves database snapshots (with their backup run ids) and the backup runs that carry
    their raw checksums; after `cut_after` fetch calls, or when asked for an id in
    `cut_at`, it raises Unavailable (a cut link);
    recorded drills land in `drills`."""

    def __init__(
        self, site: SealedSite, *snapshots: tuple[Sealed, str], runs: list[Run] | None = None
    ) -> None:
        super().__init__(site, *(s for s, _ in snapshots))
        self.run_ids = {s.snapshot_id: run for s, run in snapshots}
        self.runs = runs or []
        self.cut_after: int | None = None
        self.cut_at: set[str] = set()  # asking for any of these ids cuts the link
        self.drills: list[Any] = []

    def _summary(self, snap: Sealed) -> SnapshotSummary:
        return replace(
            super()._summary(snap), kind="database", backup_run_id=self.run_ids[snap.snapshot_id]
        )

    def get_snapshot(
        self, site: str, snapshot_id: str = "", kind: str | None = None, backup_run_id: str = ""
    ) -> SealedSnapshotRecord:
        self._seen("get_snapshot", site, snapshot_id, kind, backup_run_id)
        for snap in self.snapshots:
            if snapshot_id in ("", snap.snapshot_id) and backup_run_id in (
                "",
                self.run_ids[snap.snapshot_id],
            ):
                return SealedSnapshotRecord(self._summary(snap), snap.record)
        raise NotFound(f"site {site} has no such database snapshot")

    def list_runs(self, site: str, kind: str | None = None, limit: int = 20) -> list[Run]:
        self._seen("list_runs", site, kind, limit)
        return list(self.runs)

    def fetch_chunks(self, site: str, ids: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        if (self.cut_after is not None and len(self.fetches) >= self.cut_after) or (
            self.cut_at & set(ids)
        ):
            raise Unavailable("the server at 127.0.0.1:7443 is unreachable")
        yield from super().fetch_chunks(site, ids)

    def record_drill(self, drill: Any) -> bool:
        self._seen("record_drill", drill.site)
        self.drills.append(drill)
        return False
