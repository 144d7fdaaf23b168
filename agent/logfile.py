"""The agent's log file: `agent.log` in the state dir, rotated by size, with secrets masked.

`storesafe-agent run` and the Windows service both write here (besides stderr
for `run`), so a shop PC keeps its recent history where the technician looks
first: `agent.log` and up to five older files `agent.log.1` .. `agent.log.5`,
10 MB each. Every line passes through `MaskSecrets`, which replaces the secret
part of any StoreSafe credential or token (`<prefix>_<id>_<secret>`) with `***`,
so even a message that quotes one by mistake never lands on disk.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import time
from pathlib import Path

LOG_FILE = "agent.log"
MAX_BYTES = 10 * 1024 * 1024
BACKUP_COUNT = 5
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# `<prefix>_<16 hex id>_<secret>` (see server/services/credentials.py); the id may be shown.
_SECRET = re.compile(r"\b(ss[a-z]{1,5}_[0-9a-f]{16}_)[A-Za-z0-9_\-]+")


def mask_secrets(text: str) -> str:
    """`text` with the secret part of every credential replaced by `***`."""
    return _SECRET.sub(r"\1***", text)


class MaskSecrets(logging.Formatter):
    """A UTC formatter whose output never contains a credential's secret."""

    def __init__(self) -> None:
        super().__init__(FORMAT, DATE_FORMAT)
        self.converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record))


def file_handler(
    state_root: Path, *, max_bytes: int = MAX_BYTES, backups: int = BACKUP_COUNT
) -> logging.Handler:
    """A rotating handler on `agent.log` in `state_root` (created if missing)."""
    state_root.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        state_root / LOG_FILE, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
    )
    handler.setFormatter(MaskSecrets())
    return handler


def stderr_handler() -> logging.Handler:
    """The console handler of `storesafe-agent`, with the same format and masking."""
    handler = logging.StreamHandler()
    handler.setFormatter(MaskSecrets())
    return handler


def log_to(handlers: list[logging.Handler], level: int = logging.INFO) -> None:
    """Make `handlers` the root logger's only handlers, at `level`."""
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, logging.FileHandler) and old not in handlers:
            old.close()
    root.handlers = list(handlers)
    root.setLevel(level)
