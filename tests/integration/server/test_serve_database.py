"""`serve` on a database that `init` did not set up, or cannot reach: one sentence, what to do.

`init` puts the first admin token into the database it was given; a later
`serve --db` elsewhere would start on an empty database and refuse every token.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support.server import BIN, ServerHandle, free_port, init_server

SERVER = str(BIN / "storesafe-server")


def _serve(handle: ServerHandle, *args: str) -> subprocess.CompletedProcess[str]:
    """`serve` expected to stop at once (the checks run before it listens)."""
    argv = [SERVER, "serve", "--data-dir", str(handle.data_dir), "--listen", handle.address]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60)


def _one_sentence(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_serve_db_on_a_sqlite_initialised_dir_says_what_to_do(tmp_path: Path) -> None:
    handle = init_server(tmp_path)  # SQLite in the data dir
    other = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    done = _serve(handle, "--db", other)
    assert done.returncode == 5
    line = _one_sentence(done)
    assert f"the database {other} was never initialised" in line
    told = (
        f"`storesafe-server admin-token create --data-dir {handle.data_dir} --db '{other}' "
        "--name admin`"
    )
    assert told in line

    # Doing what it says works: the new token drives a server on that database.
    told_args = ["--data-dir", str(handle.data_dir), "--db", other, "--name", "admin"]
    created = subprocess.run(
        [SERVER, "admin-token", "create", *told_args, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    handle.admin_token = json.loads(created.stdout)["admin_token"]
    handle.db_url = other
    handle.start()
    try:
        sites = subprocess.run(
            [str(BIN / "storesafe"), "sites", "--json"],
            capture_output=True,
            text=True,
            env=handle.cli_env,
            timeout=60,
        )
        assert (sites.returncode, sites.stdout.strip()) == (0, "[]"), sites.stderr
    finally:
        handle.stop()


def test_serve_without_db_on_a_dir_initialised_with_db(tmp_path: Path) -> None:
    handle = init_server(tmp_path, db_url=f"sqlite:///{tmp_path / 'chosen.db'}")
    handle.db_url = ""
    done = _serve(handle)
    assert done.returncode == 5
    assert "if `init` was given --db, give `serve` the same --db" in _one_sentence(done)
    assert not (handle.data_dir / "storesafe.db").exists()  # no stray empty database left


def test_the_database_that_init_set_up_serves(pg_url: str, tmp_path: Path) -> None:
    handle = init_server(tmp_path, db_url=pg_url)
    handle.start()  # waits until it serves
    assert handle.stop() == 0


def test_an_unreachable_database_is_one_sentence_for_init_and_serve(tmp_path: Path) -> None:
    handle = init_server(tmp_path)
    nowhere = f"postgresql+psycopg://storesafe:s3cretpw@127.0.0.1:{free_port()}/storesafe"
    done = _serve(handle, "--db", nowhere)
    assert done.returncode == 6
    line = _one_sentence(done)
    assert line.startswith(
        "error: cannot use the database postgresql+psycopg://storesafe:***@127.0.0.1:"
    )
    assert "s3cretpw" not in line

    data_dir = tmp_path / "fresh"
    done = subprocess.run(
        [SERVER, "init", "--data-dir", str(data_dir), "--db", nowhere],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 6
    assert "cannot use the database" in _one_sentence(done)
    assert not (data_dir / "ca.pem").exists()  # a second `init` with the right --db works
