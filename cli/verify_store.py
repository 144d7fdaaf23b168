"""`storesafe verify-store`: the server re-reads stored chunks and checks them, site by site.

The server reads each chosen chunk back from the store and checks it against
the digest recorded when it arrived, with its algorithm (BLAKE3, or SHA-256 for
chunks of older agents; restic's `check --read-data-subset` is the model); a
damaged or missing chunk is named with the snapshots and backup runs it breaks,
and each site's result is recorded as a `store-check` run.
"""

from __future__ import annotations

import math
from typing import Annotated

import typer

from cli import output_store, values
from cli.context import admin
from cli.models import StoreCheckUpdate
from cli.progress import Advance, progress
from common.errors import InvalidArgument

app = typer.Typer()


def _sample(percent: float) -> float:
    if not math.isfinite(percent) or not 0 < percent <= 100:
        raise InvalidArgument(f"--sample {percent:g} is not a percentage above 0 and up to 100")
    return percent


@app.command("verify-store")
def verify_store(
    ctx: typer.Context,
    site: Annotated[
        str | None, typer.Option("--site", metavar="SITE", help="Only this site's chunks.")
    ] = None,
    sample: Annotated[
        float,
        typer.Option(
            "--sample",
            metavar="PERCENT",
            help="Share of each site's chunks to read, chosen at random (0-100].",
        ),
    ] = 100.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the results as JSON (no progress bar).")
    ] = False,
) -> None:
    """Have the server re-read the off-site store's chunks and check every byte.

    Prints per site what was checked and names every damaged or missing chunk
    with the snapshots and backup runs it breaks. Exit 0 when the store is
    clean, 2 when damage was found (like `check`).
    """
    wanted = values.name(site, "site") if site is not None else ""
    percent = _sample(sample)
    results: list[StoreCheckUpdate] = []
    with progress(not as_json, "checking", bytes_=False) as start:
        bars: dict[str, tuple[Advance, int]] = {}
        for update in admin(ctx).verify_store(wanted, percent):
            if update.site not in bars:
                bars[update.site] = (start(update.chunks_total, f"checking {update.site}"), 0)
            advance, done = bars[update.site]
            advance(update.chunks_checked - done)
            bars[update.site] = (advance, update.chunks_checked)
            if update.result is not None:
                results.append(update)
    output_store.print_results(results, as_json=as_json, site=wanted)
    if any(output_store.damaged(r) for r in results):
        raise typer.Exit(2)
