"""The agent's configuration: validate what the server pushes, apply it atomically, keep it.

The last good configuration lives in `config.json` in the state dir, with a
SHA-256 over its content. A file that fails to parse or to match its checksum
(a power cut mid-write on a filesystem that lied about fsync, a stray edit) is
set aside and treated as missing: the agent then reports running revision 0
and the server sends the latest revision again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agent.settings import write_atomic
from common import config_schema
from common.config_schema import Value
from common.errors import InvalidArgument

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """One applied revision: every key of the schema, typed."""

    revision: int
    values: Mapping[str, Value]

    @classmethod
    def defaults(cls) -> AgentConfig:
        return cls(0, config_schema.defaults())

    def __getitem__(self, key: str) -> Value:
        return self.values[key]

    def text(self, key: str) -> str:
        return str(self.values[key])

    def masked(self) -> dict[str, Value]:
        return {k: config_schema.masked(k, v) for k, v in self.values.items()}


@dataclasses.dataclass(frozen=True)
class ApplyResult:
    revision: int
    applied: bool
    error: str = ""


PathCheck = Callable[[str, str], str | None]


def local_path_problem(key: str, value: str) -> str | None:
    """Why a configured path cannot work on this machine, or None."""
    if not value:
        return None
    if sys.platform != "win32" and not value.startswith("/"):
        return f"{key}={value} is a Windows path but this agent runs on {sys.platform}"
    path = Path(value)
    if key == "backup.dir":
        if not path.exists() and not path.parent.exists():
            return f"{key}={value}: neither the folder nor its parent exists on this PC"
    elif key == "images.dir":
        if not path.is_dir():
            return f"{key}={value}: no such folder on this PC"
    elif key == "firebird.client_library" and not path.is_file():
        return f"{key}={value}: no such file on this PC"
    return None


class ConfigStore:
    """Holds the running configuration and the file it survives restarts in."""

    def __init__(self, state_dir: Path, *, path_check: PathCheck = local_path_problem) -> None:
        self._path = state_dir / CONFIG_FILE
        self._path_check = path_check
        self.current = self._load()

    @property
    def revision(self) -> int:
        return self.current.revision

    def apply(self, revision: int, raw: Mapping[str, Any]) -> ApplyResult:
        """Validate and persist a pushed revision, then switch to it; or refuse and say why."""
        if revision == self.current.revision:
            return ApplyResult(revision, True)
        try:
            values = self._validate(raw)
        except InvalidArgument as exc:
            log.warning("refused configuration revision %d: %s", revision, exc.message)
            return ApplyResult(revision, False, exc.message)
        new = AgentConfig(revision, values)
        try:
            self._save(new)
        except OSError as exc:
            why = f"cannot save the configuration in {self._path.parent}: {exc.strerror}"
            log.error("refused configuration revision %d: %s", revision, why)
            return ApplyResult(revision, False, why)
        self.current = new
        log.info("applied configuration revision %d", revision)
        return ApplyResult(revision, True)

    def _validate(self, raw: Mapping[str, Any]) -> dict[str, Value]:
        unknown = sorted(set(raw) - set(config_schema.KEYS))
        if unknown:
            raise InvalidArgument(
                f"unknown configuration key(s) {', '.join(unknown)}: this agent may be too old"
            )
        values = config_schema.defaults() | config_schema.validate(raw)
        for key in ("backup.dir", "images.dir", "firebird.client_library"):
            problem = self._path_check(key, str(values[key]))
            if problem:
                raise InvalidArgument(problem)
        return values

    def _load(self) -> AgentConfig:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
            body = data["body"]
            if data["sha256"] != _digest(body):
                raise ValueError("checksum mismatch")
            values = config_schema.defaults() | config_schema.validate(body["values"])
            return AgentConfig(int(body["revision"]), values)
        except FileNotFoundError:
            return AgentConfig.defaults()
        except (OSError, ValueError, KeyError, TypeError, InvalidArgument) as exc:
            aside = self._path.with_name(CONFIG_FILE + ".corrupt")
            log.warning(
                "the saved configuration %s is damaged (%s); set aside as %s, asking the "
                "server for the latest",
                self._path,
                exc,
                aside.name,
            )
            try:
                os.replace(self._path, aside)
            except OSError:
                log.warning("could not move the damaged configuration aside")
            return AgentConfig.defaults()

    def _save(self, cfg: AgentConfig) -> None:
        body = {"revision": cfg.revision, "values": dict(cfg.values)}
        text = json.dumps({"body": body, "sha256": _digest(body)}, indent=1, sort_keys=True)
        write_atomic(self._path, text.encode("utf-8"))  # 0600: it holds the Firebird password


def _digest(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
