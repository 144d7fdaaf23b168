"""`storesafe-server store-gc`: run the off-site store's maintenance now (retention, then
garbage collection), or show the last recorded runs; works beside running servers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from common.clock import SystemClock, iso
from common.errors import InvalidArgument, StoreSafeError
from server.db.engine import make_engine, migrate, reaching, sqlite_url
from server.domain.layers import ConfigSnapshot
from server.domain.store_gc import (
    DEFAULT_MARGIN_HOURS,
    MaintenanceReport,
    MaintenanceRunRecord,
    check_margin,
)
from server.services.store_gc import RETENTION_KEYS, StoreMaintenance, retention_keys
from server.state.config_state import SqlConfigState
from server.state.sql import SqlFleetState
from server.state.store_gc_state import SqlStoreGcState
from server.state.writer import BatchWriter
from server.storage import open_store


def store_gc(  # noqa: PLR0917 - typer passes options positionally
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="The server's data dir.", show_default=False),
    ] = None,
    db: Annotated[
        str,
        typer.Option(
            "--db",
            envvar="STORESAFE_DB",
            help="Database URL; default: the SQLite database in the data dir.",
            show_default=False,
        ),
    ] = "",
    store: Annotated[
        str,
        typer.Option(
            "--store",
            envvar="STORESAFE_STORE",
            metavar="URL",
            help="The off-site blob store, as for `serve`; default: <data-dir>/store.",
            show_default=False,
        ),
    ] = "",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would go; change nothing.")
    ] = False,
    margin_hours: Annotated[
        float,
        typer.Option(
            "--gc-margin-hours",
            min=1,
            help="The safety margin: nothing stored or condemned less than this long ago goes.",
        ),
    ] = DEFAULT_MARGIN_HOURS,
    last: Annotated[
        int,
        typer.Option("--last", min=0, help="Only show the newest N recorded runs."),
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Run the off-site store's maintenance now: forget the snapshots no retention key
    keeps, condemn the chunks no snapshot references, delete those condemned by an
    earlier run. Exit 0 when it succeeded, 5 when another server is running it."""
    try:
        report, runs = asyncio.run(
            _main(data_dir, db, store, dry_run=dry_run, margin_hours=margin_hours, last=last)
        )
    except StoreSafeError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(exc.exit_code) from None
    if report is None:
        _show_runs(runs, as_json)
        return
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2))
    else:
        for line in report_lines(report):
            typer.echo(line)
    if not report.ok:
        raise typer.Exit(1)


async def _main(
    data_dir: Path | None, db: str, store_url: str, *, dry_run: bool, margin_hours: float, last: int
) -> tuple[MaintenanceReport | None, list[MaintenanceRunRecord]]:
    margin = check_margin(margin_hours)
    if not db and data_dir is None:
        raise InvalidArgument("give --data-dir DIR or --db URL")
    if not store_url and data_dir is None:
        raise InvalidArgument("give --data-dir DIR or --store URL")
    engine = make_engine(db or sqlite_url(data_dir or Path()))
    try:
        with reaching(engine):
            await asyncio.to_thread(migrate, engine)
        gc_state = SqlStoreGcState(engine)
        if last:
            return None, await gc_state.last_runs(last)
        snapshot = await _retention_config(engine)
        blobs = open_store(store_url, data_dir or Path())
        try:
            await blobs.check()
            maintenance = StoreMaintenance(
                gc_state,
                blobs,
                SystemClock(),
                lambda site, group: retention_keys(snapshot, site, group),
                margin=margin,
            )
            with reaching(engine):
                return await maintenance.run(dry_run=dry_run), []
        finally:
            await blobs.close()
    finally:
        engine.dispose()


async def _retention_config(engine: Any) -> ConfigSnapshot:
    """The stored layers of the retention keys (none is secret: no config.key needed)."""
    fleet = SqlFleetState(engine, BatchWriter(engine))
    try:
        values, newest = await SqlConfigState(fleet).layers()
    finally:
        await asyncio.to_thread(fleet.close)
    layers: dict[tuple[str, str], dict[str, Any]] = {}
    for v in values:
        if v.key in RETENTION_KEYS:
            layers.setdefault((v.scope, v.target), {})[v.key] = json.loads(v.value_json)
    return ConfigSnapshot(layers, newest)


def report_lines(report: MaintenanceReport) -> list[str]:
    """The human summary of a run: totals, then a line per site that had something."""
    done = report.as_json()
    verb = "would have" if report.dry_run else "did"
    lines = [
        f"store maintenance ({'dry run' if report.dry_run else 'done'}, margin "
        f"{report.margin_hours:g} h, {len(report.sites)} site(s)): {verb} forget "
        f"{done['snapshots_forgotten']} snapshot(s), condemn {done['chunks_condemned']} "
        f"chunk(s), rescue {done['chunks_rescued']}, delete {done['chunks_deleted']} "
        f"chunk(s) and {done['orphans_deleted']} orphan blob(s), freeing "
        f"{_size(done['bytes_freed'])}",
    ]
    for s in report.sites:
        if s.error:
            lines.append(f"  {s.site}: FAILED: {s.error}")
        elif s.snapshots_forgotten or s.chunks_condemned or s.chunks_deleted or s.orphans_deleted:
            lines.append(
                f"  {s.site}: forgot {s.snapshots_forgotten}, condemned {s.chunks_condemned}, "
                f"deleted {s.chunks_deleted} ({_size(s.bytes_freed)}), orphans "
                f"{s.orphans_deleted}"
            )
    if report.error:
        lines.append(f"stopped: {report.error}")
    return lines


def _show_runs(runs: list[MaintenanceRunRecord], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([r.summary for r in runs], indent=2))
        return
    if not runs:
        typer.echo("No store maintenance run is recorded yet.")
        return
    for r in runs:
        s = r.summary
        typer.echo(
            f"{iso(r.started_at)} {r.outcome}{' (dry run)' if r.dry_run else ''} by {r.owner}: "
            f"forgot {s.get('snapshots_forgotten', 0)}, condemned {s.get('chunks_condemned', 0)}, "
            f"deleted {s.get('chunks_deleted', 0)} ({_size(int(s.get('bytes_freed', 0)))})"
            + (f"; {r.error}" if r.error else "")
        )


def _size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"
