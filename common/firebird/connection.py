"""Where StoreSafe (agent and admin CLI) finds the Firebird client library and how it connects.

Two rules from the field notes shape this module. Always connect with a host:
with an empty host a 3.0 client may start the embedded engine inside the process
(no password check, files owned by its user). And fdb's services API
takes ASCII strings only, so non-ASCII paths are refused up front with a typed
error instead of fdb's TypeError.

Firebird 2.5 vs 3.0: both servers are reached with a 3.0+ client (a 2.5 client
needs WireCrypt=Enabled and legacy auth on a 3.0 server). On Windows the 3.0
client lives in `<root>\\fbclient.dll`, the 2.5 one in `<root>\\bin\\`; fdb's own
registry fallback only tries `bin\\`, hence `locate_client_library`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import PureWindowsPath
from typing import Any

import fdb

from common.firebird.errors import ClientLibraryMissing, NonAsciiPath, translate

DEFAULT_HOST = "localhost"
LINUX_CLIENT = "libfbclient.so.2"
WINDOWS_DEFAULT_ROOTS = (
    r"C:\Program Files\Firebird\Firebird_5_0",
    r"C:\Program Files\Firebird\Firebird_4_0",
    r"C:\Program Files\Firebird\Firebird_3_0",
    r"C:\Program Files (x86)\Firebird\Firebird_3_0",
    r"C:\Program Files\Firebird\Firebird_2_5",
    r"C:\Program Files (x86)\Firebird\Firebird_2_5",
)

_load_lock = threading.Lock()
_loaded: list[str | None] = []


@dataclasses.dataclass(frozen=True)
class FirebirdTarget:
    """One live database and how to reach it; `password` never shows in repr or logs."""

    host: str
    database: str
    user: str
    password: str = dataclasses.field(repr=False)
    client_library: str | None = None

    @property
    def dsn(self) -> str:
        """`host:path` for a plain connection (host may be `host/port`)."""
        return f"{self.host}:{self.database}"

    def __post_init__(self) -> None:
        if not self.host:
            # An empty host would start the embedded engine (see module docstring).
            object.__setattr__(self, "host", DEFAULT_HOST)


def require_ascii(path: str, *, what: str) -> str:
    """Return `path` if fdb's services API can carry it, else raise NonAsciiPath."""
    if not path.isascii():
        raise NonAsciiPath(
            f"The {what} path {path!r} contains non-ASCII characters, which the Firebird "
            "services API cannot carry; use an ASCII path (for the database, an alias "
            "in databases.conf works too)."
        )
    return path


def locate_client_library(
    setting: str | None,
    *,
    platform: str = sys.platform,
    exists: Callable[[str], bool] = os.path.exists,
    roots: Sequence[str] = (),
    python_bits: int = 64,
) -> str | None:
    """The client library to load, or None to let fdb search (Linux default).

    `setting` is `firebird.client_library`: a file, or on Windows also an install
    root. On Windows without a setting, `roots` (from the registry or %FIREBIRD%)
    and then the default install folders are searched, 3.0+ clients first.
    """
    if platform != "win32":
        if setting:
            if not exists(setting):
                raise ClientLibraryMissing(f"firebird.client_library {setting!r} does not exist.")
            return setting
        return None
    candidates: list[str] = []
    if setting:
        if setting.lower().endswith(".dll"):
            candidates.append(setting)
        else:
            candidates.extend(_windows_candidates(setting, python_bits))
    else:
        for root in (*roots, *WINDOWS_DEFAULT_ROOTS):
            candidates.extend(_windows_candidates(root, python_bits))
    for path in candidates:
        if exists(path):
            return path
    where = setting or "the Firebird install folders"
    raise ClientLibraryMissing(
        f"No fbclient.dll found in {where}; install the Firebird 3.0 client "
        "(matching the agent's bitness) or set firebird.client_library."
    )


def _windows_candidates(root: str, python_bits: int) -> list[str]:
    base = PureWindowsPath(root)
    three = [base / "WOW64" / "fbclient.dll"] if python_bits == 32 else []
    three.append(base / "fbclient.dll")  # Firebird 3.0 and later
    return [str(p) for p in (*three, base / "bin" / "fbclient.dll")]  # 2.5 keeps it in bin


def windows_registry_roots() -> list[str]:
    """Install roots the Windows registry and %FIREBIRD% name (empty elsewhere)."""
    roots: list[str] = []
    if os.environ.get("FIREBIRD"):
        roots.append(os.environ["FIREBIRD"])
    if sys.platform == "win32":  # pragma: no cover - Windows only
        import winreg

        key_path = r"SOFTWARE\Firebird Project\Firebird Server\Instances"
        with (
            contextlib.suppress(OSError),
            winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, key_path) as key,
        ):
            roots.append(str(winreg.QueryValueEx(key, "DefaultInstance")[0]))
    return roots


def ensure_client_loaded(client_library: str | None) -> None:
    """Load the client library once per process (fdb keeps the first one it loads)."""
    with _load_lock:
        if _loaded:
            return
        path = locate_client_library(client_library, roots=windows_registry_roots())
        try:
            fdb.load_api(path)
        except Exception as exc:
            raise ClientLibraryMissing(
                f"The Firebird client library could not be loaded ({exc}); "
                "install the Firebird 3.0 client or set firebird.client_library."
            ) from exc
        _loaded.append(path)


@contextlib.contextmanager
def services(
    target: FirebirdTarget, *, what: str = "connecting to the services manager"
) -> Iterator[Any]:
    """A services-manager connection, always to a host, closed on exit."""
    ensure_client_loaded(target.client_library)
    try:
        svc = fdb.services.connect(host=target.host, user=target.user, password=target.password)
    except Exception as exc:
        raise translate(exc, what=what) from exc
    try:
        yield svc
    finally:
        try:
            svc.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            # The server dropped the connection (it does when a restore meets the end
            # of its input early) and the client freed the handle: fdb's __del__
            # would try again and print "invalid service handle".
            svc._svc_handle = None


@contextlib.contextmanager
def attach(
    target: FirebirdTarget, database: str | None = None, *, what: str = "connecting to the database"
) -> Iterator[Any]:
    """A plain connection to `database` (default: the target's) over the network, closed on exit."""
    ensure_client_loaded(target.client_library)
    path = require_ascii(database or target.database, what="database")
    try:
        con = fdb.connect(
            dsn=f"{target.host}:{path}",
            user=target.user,
            password=target.password,
            charset="UTF8",
        )
    except Exception as exc:
        raise translate(exc, what=what) from exc
    try:
        yield con
    finally:
        with contextlib.suppress(Exception):
            con.close()


def parse_version(text: str) -> tuple[int, ...]:
    """(3, 0, 11, 33637) from 'LI-V3.0.11.33637 Firebird 3.0' or '3.0.11.33637'."""
    token = text.split(maxsplit=1)[0] if text else ""
    token = token.split("V", 1)[1] if "V" in token else token
    parts: list[int] = []
    for piece in token.split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)
