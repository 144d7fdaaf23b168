"""The storage contract of configuration layers, revisions, acks and remote commands."""

from __future__ import annotations

import abc
import datetime as dt

from server.domain.records import CommandRecord, LayerValue, RevisionRecord


class ConfigState(abc.ABC):
    """Durable configuration and command state. Every write method MUST be durable when
    it returns (record_ack of an applied revision excepted, see there), and every write
    agents must hear about MUST reach the other server replicas once it commits (a
    `config:REV` or `command:SITE_ID` notice, server/state/notify.py)."""

    @abc.abstractmethod
    async def layers(self) -> tuple[list[LayerValue], dict[tuple[str, str], int]]:
        """Every stored key, and the newest revision per layer (scope, target), read at
        one moment (the two MUST agree)."""

    @abc.abstractmethod
    async def newest_revision(self) -> int:
        """The newest revision of any layer; 0 when none was ever made."""

    @abc.abstractmethod
    async def set_layer(
        self,
        *,
        scope: str,
        target: str,
        values: dict[str, str],
        unset: list[str],
        author: str,
        now: dt.datetime,
        shown: dict[str, str],
    ) -> tuple[int, list[str]]:
        """Store a change of one layer as one new revision; return it and the keys it
        changed, sorted. `values` maps key -> JSON text to store; `shown` maps key ->
        what the history may show (secrets masked).

        A change that changes nothing MUST store nothing and return (0, []).
        Revisions MUST increase across all layers, also under concurrent writers.
        """

    @abc.abstractmethod
    async def record_ack(self, *, site_id: int, revision: int, applied: bool, error: str) -> None:
        """An agent applied (or refused) a revision.

        Applied: the site's running revision MUST become `revision` and an older
        refusal MUST be cleared; this write MAY be answered before it commits (the
        agent's next check-in repairs a lost one). Refused: the reason MUST be kept
        (with its revision) until a newer revision is applied.
        """

    @abc.abstractmethod
    async def history(self, *, limit: int) -> list[RevisionRecord]:
        """The newest `limit` revisions, newest first."""

    @abc.abstractmethod
    async def create_command(
        self, *, command_id: str, site: str, kind: str, author: str, now: dt.datetime
    ) -> CommandRecord:
        """Queue a remote command for the site; MUST raise NotFound for an unknown site."""

    @abc.abstractmethod
    async def open_commands(self, *, site_id: int, since: dt.datetime) -> list[CommandRecord]:
        """Commands of the site not yet finished and created after `since`, oldest first."""

    @abc.abstractmethod
    async def sites_with_open_commands(self, *, since: dt.datetime) -> set[int]:
        """Ids of the sites with a command not finished and created after `since`."""

    @abc.abstractmethod
    async def mark_delivered(self, *, ids: list[str], now: dt.datetime) -> None:
        """The commands reached their agent; a delivery time once set MUST NOT change."""

    @abc.abstractmethod
    async def finish_command(
        self, *, site_id: int, command_id: str, outcome: str, message: str, now: dt.datetime
    ) -> None:
        """Record a command's outcome once; a repeated ack MUST change nothing. MUST raise
        NotFound when the command does not exist or belongs to another site."""

    @abc.abstractmethod
    async def expire_commands(self, *, before: dt.datetime, now: dt.datetime) -> int:
        """Finish as `expired` every open command created at or before `before`; return
        how many."""

    @abc.abstractmethod
    async def list_commands(self, *, site: str, limit: int) -> list[CommandRecord]:
        """The site's commands, newest first; MUST raise NotFound for an unknown site."""
