"""The CLI's start-up loads only what a command needs (the rule in cli/main.py's docstring).

Each case runs the real CLI in a fresh interpreter under `python -X importtime`,
which names every module the run imported; no timings are compared.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer

import cli
from cli.main import app
from common.vault.keyfile import write_key_file
from common.vault.keys import FleetPrivateKey

ROOT = Path(cli.__file__).resolve().parents[1]
HEAVY = {
    "grpc": "gRPC",
    "google.protobuf": "protobuf",
    "storesafe": "the generated protobuf code",
    "cryptography": "cryptography",
    "zstandard": "zstd",
    "blake3": "BLAKE3",
    "pyfastcdc": "the chunker",
    "fdb": "Firebird's client",
    "croniter": "cron parsing",
}
# Runs the CLI once per line of stdin (a JSON list of arguments) in one interpreter, what
# one run imports staying imported for the next; prints the exit codes as a JSON list.
RUNNER = """
import json, sys
from cli.main import app
codes = []
for line in sys.stdin:
    try:
        app(json.loads(line), prog_name="storesafe")
    except SystemExit as exit:
        codes.append(exit.code or 0)
print(json.dumps(codes))
"""


def imported(*runs: list[str], env: dict[str, str] | None = None) -> tuple[set[str], list[int]]:
    """The modules a fresh interpreter imported to run the CLI with each of `runs`, and the
    exit code of each run."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", RUNNER],
        input="\n".join(json.dumps(r) for r in runs),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("import time:")]
    assert lines, proc.stderr[-2000:]
    codes = json.loads(proc.stdout.splitlines()[-1])
    return {ln.rsplit("|", 1)[1].strip() for ln in lines}, codes


def heavy(modules: set[str]) -> set[str]:
    return {root for root in HEAVY if any(m == root or m.startswith(root + ".") for m in modules)}


def command_paths() -> list[list[str]]:
    """Every command and command group of `storesafe`, as the words that name it."""
    root = typer.main.get_command(app)
    found: list[list[str]] = []

    def walk(command: Any, words: list[str]) -> None:
        found.append(words)
        for name, sub in getattr(command, "commands", {}).items():  # a group
            walk(sub, [*words, name])

    walk(root, [])
    return found


def test_the_help_of_every_command_loads_no_heavy_library() -> None:
    paths = command_paths()
    assert ["restore"] in paths and ["images", "restore"] in paths and ["config", "set"] in paths
    modules, codes = imported(*([*words, "--help"] for words in paths))
    assert codes == [0] * len(paths)
    assert "cli.main" in modules and "typer" in modules
    assert heavy(modules) == set()


def test_a_command_that_reads_a_key_file_loads_the_vault_and_no_grpc(tmp_path: Path) -> None:
    key_file = tmp_path / "fleet.key"
    write_key_file(key_file, FleetPrivateKey.generate(), dt.datetime.now(dt.UTC))
    modules, codes = imported(["keys", "show", "--key", str(key_file), "--json"])
    assert codes == [0]
    assert "cryptography" in heavy(modules)
    assert heavy(modules) & {"grpc", "google.protobuf", "storesafe", "fdb", "croniter"} == set()


def test_a_command_that_calls_the_server_loads_grpc_and_not_the_vault() -> None:
    # nothing listens on port 9: the call fails as unreachable (6) once gRPC is loaded for it
    modules, codes = imported(
        ["--insecure", "--timeout", "5", "sites"],
        env={"STORESAFE_SERVER": "127.0.0.1:9", "STORESAFE_TOKEN": "ssadm_x_y"},
    )
    assert codes == [6]
    assert heavy(modules) == {"grpc", "google.protobuf", "storesafe"}
