"""The three console scripts as a newcomer meets them: `--version` and `--help` at 80 columns."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

import agent.main
import cli.main
import server.main
from common.version import VERSION

BIN = Path(sys.executable).parent
APPS = {
    "storesafe": cli.main.app,
    "storesafe-server": server.main.app,
    "storesafe-agent": agent.main.app,
}


@pytest.mark.parametrize("script", sorted(APPS))
def test_every_console_script_prints_its_version(script: str) -> None:
    done = subprocess.run(
        [str(BIN / script), "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{script} {VERSION}\n"
    assert done.stderr == ""


def _commands(command: Any, path: list[str]) -> Iterator[tuple[Any, list[str]]]:
    yield command, path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, [*path, name])


def _help_pages() -> Iterator[tuple[str, typer.Typer, Any, list[str]]]:
    for script, app in sorted(APPS.items()):
        for command, path in _commands(get_command(app), []):
            yield script, app, command, path


@pytest.mark.parametrize(
    ("script", "app", "command", "path"),
    list(_help_pages()),
    ids=[" ".join([s, *p]) for s, _, _, p in _help_pages()],
)
def test_help_at_80_columns_shows_every_option_name_whole(
    script: str, app: typer.Typer, command: Any, path: list[str]
) -> None:
    result = CliRunner().invoke(
        app, [*path, "--help"], env={"COLUMNS": "80", "TERM": "dumb"}, terminal_width=80
    )
    assert result.exit_code == 0, result.output
    names = [o for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")]
    missing = [name for name in names if name not in result.output]
    assert missing == [], f"{script} {' '.join(path)} --help cuts {missing}:\n{result.output}"
    assert max(len(line) for line in result.output.splitlines()) <= 80
