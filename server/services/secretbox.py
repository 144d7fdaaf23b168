"""Encryption at rest for secret configuration values (Fernet, key in the data dir)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from common.errors import FailedPrecondition

KEY_FILE = "config.key"
KEY_ENV = "STORESAFE_CONFIG_KEY"


class SecretBox:
    """Encrypts secrets before they reach the database; replicas must share the key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def for_data_dir(cls, data_dir: Path, *, create: bool = False) -> SecretBox:
        """The key from $STORESAFE_CONFIG_KEY or `<data_dir>/config.key` (made if asked)."""
        env = os.environ.get(KEY_ENV)
        if env:
            return cls(env.encode())
        path = data_dir / KEY_FILE
        if not path.exists():
            if not create:
                raise FailedPrecondition(
                    f"no {KEY_FILE} in {data_dir}: run `storesafe-server init` or set {KEY_ENV}"
                )
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(Fernet.generate_key())
        return cls(path.read_bytes().strip())

    def seal(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            raise FailedPrecondition(
                "a stored secret cannot be decrypted: this server has a different config.key "
                "than the one that stored it"
            ) from exc
