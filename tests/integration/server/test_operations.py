"""Deployment operations of `storesafe-server`: health, migrate, backup-state, restore-state."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect
from storesafe.v1 import admin_pb2

from agent.configsync import ConfigStore
from server.db.engine import head_revision, make_engine
from tests.support.agent import AgentProcess, enroll_agent, wait_for
from tests.support.server import (
    BIN,
    ServerHandle,
    free_port,
    fresh_pg_database,
    init_server,
    set_config,
    start_server,
)


def server_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "storesafe-server"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# -- health ------------------------------------------------------------------------


def test_health_says_serving_for_a_running_server(shared_server: ServerHandle) -> None:
    server = shared_server  # health only reads
    for args in (
        ["--data-dir", str(server.data_dir)],
        ["--ca", str(server.ca_path)],
        ["--data-dir", str(server.data_dir), "--service", "storesafe.v1.AgentService"],
    ):
        done = server_cli("health", "--address", server.address, *args)
        assert (done.returncode, done.stdout) == (0, "SERVING\n"), done.stderr
    # The certificate names localhost and 127.0.0.1; another name can be checked for.
    port = server.address.rsplit(":", 1)[1]
    done = server_cli(
        "health",
        "--address",
        f"localhost:{port}",
        "--ca",
        str(server.ca_path),
        "--server-name",
        "127.0.0.1",
    )
    assert done.returncode == 0, done.stderr


def test_health_fails_with_exit_1_and_one_line(shared_server: ServerHandle, tmp_path: Path) -> None:
    server = shared_server
    unknown = server_cli(
        "health",
        "--address",
        server.address,
        "--data-dir",
        str(server.data_dir),
        "--service",
        "no.such.Service",
    )
    assert unknown.returncode == 1
    assert "NOT_FOUND: the server does not know the service 'no.such.Service'" in one_line_error(
        unknown
    )
    plaintext = server_cli("health", "--address", server.address, "--insecure", "--timeout", "2")
    assert plaintext.returncode == 1
    assert "UNREACHABLE" in one_line_error(plaintext)
    nobody = server_cli(
        "health", "--address", f"127.0.0.1:{free_port()}", "--data-dir", str(server.data_dir)
    )
    assert nobody.returncode == 1
    assert "UNREACHABLE: cannot reach 127.0.0.1:" in one_line_error(nobody)
    no_ca = server_cli("health", "--address", server.address, "--data-dir", str(tmp_path))
    assert no_ca.returncode == 2
    assert "cannot read the CA certificate" in one_line_error(no_ca)


def test_health_of_a_stopped_server_is_1(tmp_path: Path) -> None:
    handle = start_server(tmp_path)
    assert (
        server_cli("health", "--address", handle.address, "--ca", str(handle.ca_path)).returncode
        == 0
    )
    handle.stop()
    done = server_cli("health", "--address", handle.address, "--ca", str(handle.ca_path))
    assert done.returncode == 1
    assert "UNREACHABLE" in one_line_error(done)


# -- migrate ------------------------------------------------------------------------


def test_migrate_creates_and_then_keeps_the_schema(db_url: str, tmp_path: Path) -> None:
    first = server_cli("migrate", "--db", db_url, "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {
        "from": None,
        "to": head_revision(),
        "head": head_revision(),
    }
    again = server_cli("migrate", "--db", db_url)
    assert (again.returncode, again.stdout) == (
        0,
        f"the schema is up to date (revision {head_revision()})\n",
    )
    engine = make_engine(db_url)
    try:
        assert {"sites", "agents", "runs", "alembic_version"} <= set(
            inspect(engine).get_table_names()
        )
    finally:
        engine.dispose()


def test_migrate_of_a_data_dir_uses_its_sqlite_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    done = server_cli("migrate", "--data-dir", str(data))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"migrated the schema from empty to {head_revision()}\n"
    assert (data / "storesafe.db").is_file()


def test_migrate_failures_are_one_line(tmp_path: Path) -> None:
    missing = server_cli("migrate", "--data-dir", str(tmp_path / "none"))
    assert missing.returncode == 2
    assert "does not exist" in one_line_error(missing)
    neither = server_cli("migrate")
    assert neither.returncode == 2
    assert "give --db URL or --data-dir DIR" in one_line_error(neither)
    down = server_cli("migrate", "--db", f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x")
    assert down.returncode == 6
    assert "cannot migrate the database: connection failed" in one_line_error(down)


# -- backup-state / restore-state ------------------------------------------------------


@contextlib.contextmanager
def two_databases(backend: str) -> Iterator[tuple[str, str]]:
    if backend == "sqlite":
        yield "", ""
        return
    with fresh_pg_database() as source, fresh_pg_database() as target:
        yield source, target


def test_a_restored_state_serves_the_same_fleet_keys_and_secrets(
    tmp_path: Path, db_backend: str
) -> None:
    with two_databases(db_backend) as (source_db, target_db):
        original = start_server(tmp_path, db_url=source_db)
        state = tmp_path / "agent"
        try:
            assert enroll_agent(original, state, "shop-r").returncode == 0
            set_config(
                original, admin_pb2.CONFIG_SCOPE_SITE, "shop-r", firebird__password="hunter2"
            )
            archive = tmp_path / "state.tar.gz"
            args = ["--data-dir", str(original.data_dir), "--to", str(archive)]
            done = server_cli("backup-state", *args, *(["--db", source_db] if source_db else []))
            assert done.returncode == 0, done.stderr  # taken while the server runs
        finally:
            assert original.stop() == 0
        assert archive.stat().st_mode & 0o077 == 0  # it holds the private keys
        with tarfile.open(archive) as tar:
            names = set(tar.getnames())
        db_member = "storesafe.db" if db_backend == "sqlite" else "storesafe.pgdump"
        assert {
            "manifest.json",
            "ca.pem",
            "ca.key",
            "server.pem",
            "server.key",
            "config.key",
            db_member,
        } <= names
        assert "server.log" in names  # other top-level files come along

        restored_dir = tmp_path / "restored"
        args = ["--from", str(archive), "--data-dir", str(restored_dir)]
        done = server_cli("restore-state", *args, *(["--db", target_db] if target_db else []))
        assert done.returncode == 0, done.stderr
        assert (restored_dir / "config.key").read_bytes() == (
            original.data_dir / "config.key"
        ).read_bytes()
        assert (restored_dir / "server.key").stat().st_mode & 0o077 == 0
        # The same address and CA: the agent and the admin see the same server.
        restored = dataclasses.replace(
            original, data_dir=restored_dir, db_url=target_db, proc=None, log_path=None
        )
        restored.start()
        agent = AgentProcess.start(state)
        try:
            health = server_cli(
                "health", "--address", restored.address, "--data-dir", str(restored_dir)
            )
            assert health.returncode == 0, health.stderr
            sites = restored.admin_stub().ListSites(
                admin_pb2.ListSitesRequest(), metadata=restored.admin_metadata, timeout=10
            )
            assert [s.site for s in sites.sites] == ["shop-r"]  # the old admin token works
            # The agent's credential works, and the secret set before the backup is
            # decrypted with the restored config.key and delivered.
            wait_for(lambda: agent.status()["last_result"] == "ok", what="a check-in")
            wait_for(
                lambda: ConfigStore(state).current.text("firebird.password") == "hunter2",
                what="the secret from the restored server",
            )
        finally:
            agent.stop()
            restored.stop()


def test_restore_refuses_what_it_cannot_do_cleanly(tmp_path: Path) -> None:
    handle = init_server(tmp_path)
    archive = tmp_path / "s.tar.gz"
    assert (
        server_cli(
            "backup-state", "--data-dir", str(handle.data_dir), "--to", str(archive)
        ).returncode
        == 0
    )
    busy = server_cli("restore-state", "--from", str(archive), "--data-dir", str(handle.data_dir))
    assert busy.returncode == 5
    assert "is not empty; restore into a new folder" in one_line_error(busy)
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"not a tar")
    bad = server_cli("restore-state", "--from", str(garbage), "--data-dir", str(tmp_path / "x"))
    assert bad.returncode == 2
    assert "is not a StoreSafe state backup" in one_line_error(bad)
    assert not (tmp_path / "x").exists()
    with_db = server_cli(
        "restore-state",
        "--from",
        str(archive),
        "--data-dir",
        str(tmp_path / "y"),
        "--db",
        "postgresql+psycopg://u@127.0.0.1/x",
    )
    assert with_db.returncode == 2
    assert "restore it without --db" in one_line_error(with_db)
    not_init = server_cli("backup-state", "--data-dir", str(tmp_path), "--to", str(tmp_path / "z"))
    assert not_init.returncode == 5
    assert "is not an initialised StoreSafe data dir" in one_line_error(not_init)


def test_restore_of_a_postgresql_dump_needs_an_empty_database(tmp_path: Path, pg_url: str) -> None:
    handle = init_server(tmp_path, db_url=pg_url)
    archive = tmp_path / "pg.tar.gz"
    done = server_cli(
        "backup-state", "--data-dir", str(handle.data_dir), "--db", pg_url, "--to", str(archive)
    )
    assert done.returncode == 0, done.stderr
    no_db = server_cli("restore-state", "--from", str(archive), "--data-dir", str(tmp_path / "a"))
    assert no_db.returncode == 2
    assert "give --db with the URL of an empty database" in one_line_error(no_db)
    full = server_cli(
        "restore-state", "--from", str(archive), "--data-dir", str(tmp_path / "b"), "--db", pg_url
    )
    assert full.returncode == 5
    assert "restore into an empty database" in one_line_error(full)
    assert not (tmp_path / "b").exists()  # nothing half-restored


@pytest.mark.parametrize("missing", ["config.key", "server.key"])
def test_backup_refuses_a_data_dir_without_its_keys(tmp_path: Path, missing: str) -> None:
    handle = init_server(tmp_path)
    (handle.data_dir / missing).unlink()
    done = server_cli(
        "backup-state", "--data-dir", str(handle.data_dir), "--to", str(tmp_path / "s.tar.gz")
    )
    assert done.returncode == 5
    assert f"lacks {missing}" in one_line_error(done)


def test_backup_and_restore_into_unwritable_places_are_one_line(tmp_path: Path) -> None:
    # Found trying the Dockerfile's steps as an unprivileged user: a folder the
    # server may not write was a traceback. A file in the way fails the same
    # code path, and does so for root too.
    handle = init_server(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    archive = tmp_path / "s.tar.gz"
    ok = server_cli("backup-state", "--data-dir", str(handle.data_dir), "--to", str(archive))
    assert ok.returncode == 0, ok.stderr
    cases = (
        (
            ["backup-state", "--data-dir", str(handle.data_dir), "--to", str(blocker / "s.tgz")],
            f"cannot write {blocker / 's.tgz'} (Not a directory)",
        ),
        (
            ["restore-state", "--from", str(archive), "--data-dir", str(blocker / "new")],
            f"cannot create {blocker / 'new'} (Not a directory)",
        ),
    )
    for args, words in cases:
        done = server_cli(*args)
        assert done.returncode == 5, done.stderr
        assert words in one_line_error(done)
