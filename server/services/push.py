"""Live push of configuration revisions and remote commands to connected agents.

Design (after Elastic fleet-server's policy monitor):

- Each agent holds one WatchConfig stream. The hub keeps one Subscriber per
  stream: its site, group, and the revision it last sent on that stream
  (starting from the revision the agent says it runs).
- The hub holds one immutable ConfigSnapshot of every layer. A change made on
  this replica refreshes it at once; a change made on another replica arrives
  as a PostgreSQL NOTIFY (see changefeed.py), and a periodic poll of the
  newest revision catches anything a lost notification missed.
- Latest revision only: after a refresh each subscriber whose desired revision
  differs from what it was sent is woken once, and sends the whole effective
  configuration of the newest revision. Intermediate revisions are never
  queued, so an agent that was away for three revisions gets only the last;
  a burst of changes coalesces into whatever is newest when the stream runs.
- Fair and throttled: wake-ups go out in registration order in slices, the
  event loop yielding between slices, so one fan-out to 10,000 streams does
  not starve check-ins and reports; each stream then builds and writes its own
  message, and gRPC flow control paces slow agents without blocking others.
- Tolerant of agents that come and go: nothing is kept for disconnected
  agents. A reconnecting agent states its running revision and is brought
  up to date on the spot; check-ins also carry the running revision, so the
  server's view of "applied" is the truth even if an ack was lost.
- A stopping server says goodbye: every stream gets one ReconnectDirective
  with a window sized to the number of streams (`reconnect_window`), and
  ends; each agent comes back at a random moment within it, so a restart of
  a server holding 10,000 agents is not followed by 10,000 TLS handshakes in
  the same second (agents that lost the server without a goodbye use their
  own jittered backoff).
- A revocation ends the revoked agents' streams at once: the replica that
  made it cuts them off directly, the others when the change feed brings its
  notice. A cut-off stream sends nothing more (no configuration, no command)
  and ends with Unauthenticated; the agent's next calls are refused.
- Commands ride the same stream. Open commands of the site (not finished,
  not expired) are sent on connect and whenever a new one is queued; each
  is sent once per stream, and the agent runs each id at most once, so a
  redelivery after a reconnect is harmless.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator, Callable

from common.clock import Clock
from common.config_schema import Value, agent_values
from common.errors import Unauthenticated
from server.domain.layers import SITE, ConfigSnapshot
from server.domain.records import CommandRecord, LayerValue
from server.services.secretbox import SecretBox
from server.state.config_base import ConfigState

log = logging.getLogger(__name__)

COMMAND_LIFETIME = dt.timedelta(hours=24)
WAKE_SLICE = 500
CUT_OFF = "this agent's credential was revoked; re-enroll the agent"


@dataclasses.dataclass(frozen=True)
class ConfigDirective:
    revision: int
    values: dict[str, Value]


@dataclasses.dataclass(frozen=True)
class CommandDirective:
    command: CommandRecord


@dataclasses.dataclass(frozen=True)
class ReconnectDirective:
    within_seconds: int


Directive = ConfigDirective | CommandDirective | ReconnectDirective

# Agents a restarted server takes back per second (TLS handshake, stream, catch-up
# push and ack each), measured on a 2-core machine; the goodbye window follows from it.
RECONNECTS_PER_SECOND = 400.0
MIN_RECONNECT_WINDOW = 5


def reconnect_window(streams: int, per_second: float = RECONNECTS_PER_SECOND) -> int:
    """Seconds over which `streams` agents should spread their return."""
    return max(MIN_RECONNECT_WINDOW, int(streams / per_second + 0.999))


class Subscriber:
    """One open WatchConfig stream."""

    def __init__(
        self, site_id: int, site: str, group: str, running_revision: int, agent_id: str = ""
    ) -> None:
        self.site_id = site_id
        self.site = site
        self.group = group
        self.agent_id = agent_id
        self.revoked = False
        self.sent_revision = running_revision
        self.sent_commands: set[str] = set()
        self.commands_dirty = True
        self.wake = asyncio.Event()
        self.wake.set()


class ConfigHub:
    def __init__(self, config: ConfigState, box: SecretBox, clock: Clock) -> None:
        self._config = config
        self._box = box
        self._clock = clock
        self._snapshot = ConfigSnapshot.empty()
        self._subs: dict[int, set[Subscriber]] = {}
        self._lock = asyncio.Lock()
        # One shared ConfigDirective per (revision, group, site with its own layer) of
        # the current snapshot: a fan-out builds each distinct message once, not per stream.
        self._built_for: ConfigSnapshot | None = None
        self._built: dict[tuple[int, str, str], ConfigDirective] = {}
        self._goodbye: ReconnectDirective | None = None
        # Sites that may have open commands (None: unknown, so every stream looks).
        # A new stream of any other site skips the database read for commands.
        # Sites are added on every command notice and dropped only by a reload,
        # which keeps whatever was added while it ran.
        self._command_sites: set[int] | None = None
        self._added_while_loading: set[int] | None = None

    @property
    def snapshot(self) -> ConfigSnapshot:
        return self._snapshot

    @property
    def stream_count(self) -> int:
        return sum(len(s) for s in self._subs.values())

    async def refresh(self) -> None:
        """Reload every layer and wake the streams that are behind."""
        async with self._lock:
            values, newest = await self._config.layers()
            self._snapshot = build_snapshot(values, newest, self._box)
        await self._wake(self._behind)

    async def refresh_if_newer(self) -> None:
        """The poll fallback: refresh only when the database has a newer revision."""
        if await self._config.newest_revision() != self._snapshot.revision:
            await self.refresh()

    async def goodbye(self, per_second: float = RECONNECTS_PER_SECOND) -> int:
        """Tell every stream to end with a reconnect window; return the window (s)."""
        window = reconnect_window(self.stream_count, per_second)
        self._goodbye = ReconnectDirective(window)
        await self._wake(lambda sub: True)
        return window

    async def load_command_sites(self) -> None:
        """(Re)load which sites have open commands (at start and on each poll)."""
        self._added_while_loading = set()
        try:
            found = await self._config.sites_with_open_commands(
                since=self._clock.now() - COMMAND_LIFETIME
            )
            self._command_sites = found | self._added_while_loading
        finally:
            self._added_while_loading = None

    async def commands_changed(self, site_id: int | None = None) -> None:
        """Wake the streams of one site (or all) to look for new commands."""
        if site_id is None:
            self._command_sites = None
        else:
            for known in (self._command_sites, self._added_while_loading):
                if known is not None:
                    known.add(site_id)

        def hit(sub: Subscriber) -> bool:
            if site_id is None or sub.site_id == site_id:
                sub.commands_dirty = True
                return True
            return False

        await self._wake(hit)

    async def cut_off(self, site: str, keep: str | None = None) -> int:
        """End the streams of `site`'s agents (all but agent `keep`) at once; return how many.

        A cut-off stream yields nothing more and ends with Unauthenticated."""

        def hit(sub: Subscriber) -> bool:
            if sub.site == site and (keep is None or sub.agent_id != keep):
                sub.revoked = True
                return True
            return False

        return await self._wake(hit)

    def subscribe(
        self, site_id: int, site: str, group: str, running: int, agent_id: str = ""
    ) -> Subscriber:
        sub = Subscriber(site_id, site, group, running, agent_id)
        sub.commands_dirty = self._command_sites is None or site_id in self._command_sites
        self._subs.setdefault(site_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._subs.get(sub.site_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.site_id]

    async def directives(self, sub: Subscriber) -> AsyncIterator[Directive]:
        """What to send on one stream, forever (the caller ends it by cancelling)."""
        while True:
            await sub.wake.wait()
            sub.wake.clear()
            if sub.revoked:
                raise Unauthenticated(CUT_OFF)
            if self._goodbye is not None:
                yield self._goodbye
                return
            snap = self._snapshot
            desired = snap.desired_revision(sub.site, sub.group)
            if desired and desired != sub.sent_revision:
                sub.sent_revision = desired
                yield self._config_directive(snap, desired, sub.site, sub.group)
            if sub.commands_dirty:
                sub.commands_dirty = False
                async for cmd in self._new_commands(sub):
                    if sub.revoked:
                        raise Unauthenticated(CUT_OFF)
                    yield CommandDirective(cmd)

    def _config_directive(
        self, snap: ConfigSnapshot, desired: int, site: str, group: str
    ) -> ConfigDirective:
        """The directive for a site; sites without a layer of their own share one per group.

        The directive (and its values) must be treated as read-only by its consumers.
        """
        if self._built_for is not snap:
            self._built_for, self._built = snap, {}
        own = site if (SITE, site) in snap.layers else ""
        key = (desired, group, own)
        found = self._built.get(key)
        if found is None:
            values = agent_values({k: e.value for k, e in snap.effective(site, group).items()})
            found = self._built[key] = ConfigDirective(desired, values)
        return found

    async def _new_commands(self, sub: Subscriber) -> AsyncIterator[CommandRecord]:
        now = self._clock.now()
        found = await self._config.open_commands(site_id=sub.site_id, since=now - COMMAND_LIFETIME)
        fresh = [c for c in found if c.id not in sub.sent_commands]
        if not fresh or sub.revoked:
            return
        await self._config.mark_delivered(ids=[c.id for c in fresh], now=now)
        for cmd in fresh:
            sub.sent_commands.add(cmd.id)
            yield cmd

    def _behind(self, sub: Subscriber) -> bool:
        desired = self._snapshot.desired_revision(sub.site, sub.group)
        return bool(desired) and desired != sub.sent_revision

    async def _wake(self, predicate: Callable[[Subscriber], bool]) -> int:
        woken = 0
        for subs in list(self._subs.values()):
            for sub in list(subs):
                if predicate(sub):
                    sub.wake.set()
                    woken += 1
                    if woken % WAKE_SLICE == 0:
                        await asyncio.sleep(0)
        if woken:
            log.debug("woke %d stream(s)", woken)
        return woken


def build_snapshot(
    values: list[LayerValue], newest: dict[tuple[str, str], int], box: SecretBox
) -> ConfigSnapshot:
    """The snapshot of the stored layers, their secrets opened."""
    layers: dict[tuple[str, str], dict[str, Value]] = {}
    for v in values:
        stored = json.loads(v.value_json)
        if isinstance(stored, dict) and "sealed" in stored:
            stored = box.open(stored["sealed"])
        layers.setdefault((v.scope, v.target), {})[v.key] = stored
    return ConfigSnapshot(layers, newest)
