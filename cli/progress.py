"""The progress bar of a long transfer (restores, store checks): on stderr, on a terminal only."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

Advance = Callable[[int], None]
Start = Callable[..., Advance]  # start(total, label=None) -> advance


@contextmanager
def progress(enabled: bool, label: str = "restoring", *, bytes_: bool = True) -> Iterator[Start]:
    """A `start(total, label=None)` that adds a bar of `total` bytes (or items, when not
    `bytes_`) and returns its `advance(n)`.

    Shown only when `enabled` and stderr is a terminal (never with --json, never in a pipe).
    """
    console = Console(stderr=True)
    figures: list[ProgressColumn] = (
        [DownloadColumn(binary_units=True), TransferSpeedColumn()]
        if bytes_
        else [MofNCompleteColumn()]
    )
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        *figures,
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not (enabled and console.is_terminal),
    )

    def start(total: int, name: str | None = None) -> Advance:
        task = bar.add_task(name or label, total=total)
        return lambda n: bar.advance(task, n)

    with bar:
        yield start
