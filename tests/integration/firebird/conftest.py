"""Fixtures for tests against the real Firebird server (started by scripts/setup-firebird).

The server fixture fails, never skips: the test command installs and starts
Firebird, so an unreachable server is a broken set-up, not an optional extra.
Databases live under /var/tmp (the server's OS user cannot reach pytest's
private tmp folders); one shop database is shared by the tests that only read it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.firebird.connection import FirebirdTarget, services
from common.firebird.errors import FirebirdJobError
from tests.support.shopsim import create_shop

PASSWORD_FILE = Path("/etc/firebird/3.0/SYSDBA.password")
ROOT = Path("/var/tmp/storesafe-fbtests")
SHOP_ACCOUNTS = 300


def read_password() -> str:
    if os.environ.get("STORESAFE_FB_PASSWORD"):
        return os.environ["STORESAFE_FB_PASSWORD"]
    try:
        text = PASSWORD_FILE.read_text()
    except OSError as exc:
        pytest.fail(
            f"cannot read the SYSDBA password from {PASSWORD_FILE}: {exc}; "
            "run scripts/setup-firebird or set STORESAFE_FB_PASSWORD"
        )
    for line in text.splitlines():
        if line.startswith("ISC_PASSWORD="):
            return line.split("=", 1)[1].strip().strip('"')
    pytest.fail(f"no ISC_PASSWORD in {PASSWORD_FILE}")


@pytest.fixture(scope="session")
def fb_password() -> str:
    return read_password()


@pytest.fixture(scope="session")
def fb_root(fb_password: str) -> Iterator[Path]:
    """A session folder the server can write in; the server must be reachable."""
    probe = FirebirdTarget("localhost", "/nonexistent.fdb", "SYSDBA", fb_password)
    try:
        with services(probe) as svc:
            svc.get_server_version()
    except FirebirdJobError as exc:
        pytest.fail(
            f"Firebird is not reachable on localhost:3050 ({exc}); "
            "run scripts/setup-firebird as root first"
        )
    root = ROOT / uuid.uuid4().hex[:8]
    root.mkdir(parents=True)
    ROOT.chmod(0o755)
    root.chmod(0o755)
    dbs = root / "db"
    dbs.mkdir()
    shutil.chown(dbs, "firebird", "firebird")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def new_target(fb_root: Path, fb_password: str, name: str, **shop: int) -> FirebirdTarget:
    target = FirebirdTarget("localhost", str(fb_root / "db" / f"{name}.fdb"), "SYSDBA", fb_password)
    create_shop(target, **shop)
    return target


@pytest.fixture(scope="session")
def shop(fb_root: Path, fb_password: str) -> FirebirdTarget:
    """The shared shop database (about 4 MB): tests may write to it only via the writer."""
    return new_target(fb_root, fb_password, "shop", accounts=SHOP_ACCOUNTS, filler_mb=3)


@pytest.fixture
def backup_dir(fb_root: Path) -> Path:
    path = fb_root / f"backups-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    path.chmod(0o755)
    return path


@pytest.fixture
def tiny_fs(fb_root: Path) -> Iterator[Path]:
    """A real 1 MiB filesystem (tmpfs) to fill up."""
    mount = fb_root / f"tiny-{uuid.uuid4().hex[:8]}"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mount)], check=True
    )
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)
