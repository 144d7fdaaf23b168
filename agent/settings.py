"""Where the agent keeps its state, and the credential file it earns at enrollment.

The state dir holds everything the agent must not lose: the credential file
(server address, agent id, secret, site, group, the server's CA certificate),
the outbox, and the small status file. The credential file is written
atomically with mode 0600, and the secret never appears in a repr or a log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from agent.domain.errors import NotEnrolled, StateDirUnusable
from common.clock import iso
from common.errors import InvalidArgument

ENV_STATE_DIR = "STORESAFE_STATE_DIR"
CREDENTIALS_FILE = "credentials.json"
CA_FILE = "ca.pem"
OUTBOX_FILE = "outbox.sqlite"
STATUS_FILE = "status.json"
_FORMAT_VERSION = 1


def default_state_dir() -> Path:
    """%ProgramData%\\StoreSafe on Windows, /var/lib/storesafe-agent elsewhere."""
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "StoreSafe"
    return Path("/var/lib/storesafe-agent")


def resolve_state_dir(explicit: Path | None = None) -> Path:
    """The state dir to use: the explicit option, else $STORESAFE_STATE_DIR, else the default."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(ENV_STATE_DIR, "").strip()
    return Path(from_env) if from_env else default_state_dir()


@dataclasses.dataclass(frozen=True)
class Credentials:
    """What enrollment gave this agent; `credential` is the secret."""

    server: str
    agent_id: str
    credential: str = dataclasses.field(repr=False)
    site: str
    group: str
    ca_file: str | None = CA_FILE
    insecure: bool = False
    enrolled_at: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": _FORMAT_VERSION,
            "server": self.server,
            "agent_id": self.agent_id,
            "credential": self.credential,
            "site": self.site,
            "group": self.group,
            "ca_file": self.ca_file,
            "insecure": self.insecure,
            "enrolled_at": iso(self.enrolled_at),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Credentials:
        enrolled = data.get("enrolled_at")
        return cls(
            server=str(data["server"]),
            agent_id=str(data["agent_id"]),
            credential=str(data["credential"]),
            site=str(data["site"]),
            group=str(data.get("group", "")),
            ca_file=data.get("ca_file"),
            insecure=bool(data.get("insecure", False)),
            enrolled_at=dt.datetime.fromisoformat(enrolled) if enrolled else None,
        )


class StateDir:
    """The agent's state dir and the files in it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def credentials_path(self) -> Path:
        return self.root / CREDENTIALS_FILE

    @property
    def outbox_path(self) -> Path:
        return self.root / OUTBOX_FILE

    @property
    def status_path(self) -> Path:
        return self.root / STATUS_FILE

    def ensure(self) -> None:
        """Create the state dir (mode 0700) and prove it is writable, or raise StateDirUnusable."""
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError as exc:
            raise StateDirUnusable(
                f"cannot write the state dir {self.root} ({exc.strerror or exc}); "
                "run as an administrator or pass --state-dir DIR"
            ) from exc

    def is_enrolled(self) -> bool:
        return self.credentials_path.is_file()

    def load_credentials(self) -> Credentials:
        """Read the credential file, or raise NotEnrolled / StateDirUnusable."""
        path = self.credentials_path
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NotEnrolled(
                f"this agent is not enrolled (no {path}); run "
                "`storesafe-agent enroll --server HOST:PORT --token TOKEN --site SITE` first, "
                f"or name the state dir it was enrolled into with --state-dir or {ENV_STATE_DIR}"
            ) from None
        except OSError as exc:
            raise StateDirUnusable(f"cannot read {path} ({exc.strerror or exc})") from exc
        try:
            return Credentials.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            raise StateDirUnusable(
                f"the credential file {path} is damaged; enroll this agent again"
            ) from exc

    def save_credentials(self, creds: Credentials, ca_pem: bytes | None) -> None:
        """Store the CA certificate (if any) and then the credential file, each atomically."""
        self.ensure()
        try:
            if ca_pem is not None:
                write_atomic(self.root / (creds.ca_file or CA_FILE), ca_pem, mode=0o644)
            payload = json.dumps(creds.to_json(), indent=2).encode("utf-8")
            write_atomic(self.credentials_path, payload, mode=0o600)
        except OSError as exc:
            raise StateDirUnusable(
                f"cannot write the credential file in {self.root} ({exc.strerror or exc})"
            ) from exc

    def read_ca(self, creds: Credentials) -> bytes | None:
        """The stored CA certificate, or None to trust the system's roots."""
        if creds.ca_file is None:
            return None
        path = self.root / creds.ca_file
        try:
            return path.read_bytes()
        except OSError as exc:
            raise StateDirUnusable(
                f"cannot read the server's CA certificate {path} ({exc.strerror or exc}); "
                "enroll this agent again"
            ) from exc


def read_ca_file(path: Path) -> bytes:
    """Read a PEM CA certificate given on the command line, or raise InvalidArgument."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read the CA file {path} ({exc.strerror or exc})") from exc
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise InvalidArgument(f"the CA file {path} is not a PEM certificate")
    return data


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.chmod(tmp, mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    if sys.platform == "win32":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
