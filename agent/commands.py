"""Remote commands: run each command id at most once, and say how it ended."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from agent.settings import write_atomic

log = logging.getLogger(__name__)

DONE_FILE = "commands.json"
KEEP = 500


@dataclasses.dataclass(frozen=True)
class CommandResult:
    outcome: str  # "succeeded", "failed" or "rejected"
    message: str


Handler = Callable[[], Awaitable[CommandResult]]


class CommandRunner:
    """Dispatches commands to handlers, remembering finished ids across restarts."""

    def __init__(self, state_dir: Path, handlers: dict[str, Handler]) -> None:
        self._path = state_dir / DONE_FILE
        self._handlers = handlers
        self._done: dict[str, CommandResult] = self._load()

    def seen(self, command_id: str) -> CommandResult | None:
        return self._done.get(command_id)

    async def run(self, command_id: str, kind: str) -> CommandResult:
        """Run the command once; a redelivered id returns the first outcome again."""
        previous = self._done.get(command_id)
        if previous is not None:
            log.info("command %s was delivered again; it already ran", command_id)
            return previous
        handler = self._handlers.get(kind)
        if handler is None:
            result = CommandResult("rejected", f"this agent does not know the command {kind!r}")
        else:
            log.info("running remote command %s (%s)", command_id, kind)
            try:
                result = await handler()
            except Exception as exc:
                log.exception("remote command %s failed", command_id)
                result = CommandResult("failed", f"{type(exc).__name__}: {exc}")
        self._done[command_id] = result
        self._save()
        return result

    def _load(self) -> dict[str, CommandResult]:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
            return {k: CommandResult(v[0], v[1]) for k, v in data.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, IndexError, AttributeError):
            log.warning("the command log %s is damaged; starting a new one", self._path)
            return {}

    def _save(self) -> None:
        keep = dict(list(self._done.items())[-KEEP:])
        data = {k: [v.outcome, v.message] for k, v in keep.items()}
        write_atomic(self._path, json.dumps(data).encode("utf-8"))
        self._done = keep
