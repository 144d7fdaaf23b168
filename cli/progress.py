"""The progress bar of a long transfer (restores, store checks): on stderr, on a terminal only."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

Advance = Callable[[int], None]
Start = Callable[[int], Advance]


@contextmanager
def progress(enabled: bool, label: str = "restoring") -> Iterator[Start]:
    """A `start(total)` that adds a bar of `total` bytes and returns its `advance(n)`.

    Shown only when `enabled` and stderr is a terminal (never with --json, never in a pipe).
    """
    console = Console(stderr=True)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not (enabled and console.is_terminal),
    )

    def start(total: int) -> Advance:
        task = bar.add_task(label, total=total)
        return lambda n: bar.advance(task, n)

    with bar:
        yield start
