"""The capability seam: a capability plugs in tasks, commands and facts without touching service.py."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from storesafe.v1 import agent_pb2

from agent.capability import Capability, Host, Seam, Setup
from agent.commands import CommandResult, CommandRunner, Handler
from agent.configsync import ConfigStore
from agent.domain.messages import CheckIn
from agent.domain.reports import (
    FirebirdHealth,
    ImageSyncDetails,
    Outcome,
    RunKind,
    RunReport,
)
from agent.firebird.capability import FirebirdBackup
from agent.installed import CAPABILITIES
from agent.runner import RunnerConfig
from agent.scheduler import Scheduler, Task
from agent.service import serve
from agent.settings import Credentials, StateDir
from tests.support.agentfakes import T0, recording_server
from tests.support.clock import VirtualClock


class Tiny(Capability):
    """The smallest capability: one scheduled task, one command, one volume, one fact."""

    name = "tiny"

    def __init__(self, setup: Setup) -> None:
        self.clock = setup.clock
        self.root = setup.state_dir
        self.ran: list[str] = []
        self.answered = 0
        BUILT.append(self)

    def why_not_configured(self) -> str | None:
        return None

    def tasks(self) -> Sequence[Task]:
        return [Task("tiny-sync", "backup.schedule", lambda cfg: None, self.sync)]

    async def sync(self, trigger: str) -> RunReport:
        self.ran.append(trigger)
        now = self.clock.now()
        return RunReport(
            RunKind.IMAGE_SYNC,
            now,
            now,
            Outcome.SUCCEEDED,
            details=ImageSyncDetails(files_scanned=3),
            trigger=trigger,
            id=f"tiny-{len(self.ran)}",
        )

    def commands(self, host: Host) -> Mapping[str, Handler]:
        async def sync_now() -> CommandResult:
            self.answered += 1
            report = await host.run("tiny-sync", trigger="remote")
            return CommandResult("succeeded", f"synced ({report is not None})")

        return {"sync-now": sync_now}

    def volumes(self) -> Mapping[str, Path]:
        return {"images": self.root / "images"}

    def checkin(self, checkin: CheckIn) -> CheckIn:
        return dataclasses.replace(checkin, hostname=checkin.hostname + "+tiny")


class Unconfigured(Capability):
    name = "unconfigured"

    def why_not_configured(self) -> str | None:
        return "images.folder is not configured"


BUILT: list[Tiny] = []  # the instances serve() built, for the asserts


def setup(tmp_path: Path) -> Setup:
    store = ConfigStore(tmp_path, path_check=lambda key, value: None)
    return Setup(config=store, clock=VirtualClock(T0), state_dir=tmp_path)


def run_command(tmp_path: Path, seam: Seam, kind: str) -> CommandResult:
    s = setup(tmp_path)
    scheduler = Scheduler(
        config=s.config, tasks=seam.tasks(), clock=VirtualClock(T0), state_dir=tmp_path
    )
    runner = CommandRunner(tmp_path, seam.commands(scheduler))
    return asyncio.run(runner.run("c1", kind))


def test_a_command_no_capability_claims_is_answered_not_configured_by_the_seam(
    tmp_path: Path,
) -> None:
    firebird_only = Seam([FirebirdBackup(setup(tmp_path))])
    result = run_command(tmp_path, firebird_only, "sync-now")
    assert result == CommandResult("rejected", "no image sync job is configured on this agent yet")
    assert "backup-now" in firebird_only.commands(host=None)  # type: ignore[arg-type]


def test_the_installed_image_sync_rejects_sync_now_until_it_is_configured(
    tmp_path: Path,
) -> None:
    installed = Seam([build(setup(tmp_path)) for build in CAPABILITIES])
    result = run_command(tmp_path, installed, "sync-now")
    assert result.outcome == "rejected"
    assert "no connection to an off-site store" in result.message
    assert installed.not_configured()["images"] == (
        "this agent has no connection to an off-site store"
    )


def test_a_command_kind_outside_the_vocabulary_stays_unknown(tmp_path: Path) -> None:
    result = run_command(tmp_path, Seam([]), "format-disk")
    assert result == CommandResult("rejected", "this agent does not know the command 'format-disk'")


def test_the_seam_joins_volumes_facts_and_reasons(tmp_path: Path) -> None:
    s = setup(tmp_path)
    seam = Seam([Tiny(s), Unconfigured()])
    assert seam.volumes() == {"images": tmp_path / "images"}
    checkin = seam.checkin(CheckIn(agent_version="1", hostname="pc", os="o", agent_time=T0))
    assert checkin.hostname == "pc+tiny"
    assert seam.not_configured() == {"unconfigured": "images.folder is not configured"}


def test_the_firebird_capability_adds_its_health_and_backup_volume(tmp_path: Path) -> None:
    s = setup(tmp_path)
    s.config.apply(1, {"firebird.database": "/db/shop.fdb", "backup.dir": str(tmp_path / "b")})
    firebird = FirebirdBackup(s)
    seam = Seam([firebird])
    assert seam.volumes() == {"backup": tmp_path / "b"}
    assert seam.not_configured() == {}
    plain = CheckIn(agent_version="1", hostname="pc", os="o", agent_time=T0)
    assert seam.checkin(plain).firebird is None  # no backup yet, no figures
    health = FirebirdHealth(oit=4)
    firebird.jobs.latest_health = health  # type: ignore[attr-defined]
    assert seam.checkin(plain).firebird == health


def test_two_capabilities_may_not_claim_one_command(tmp_path: Path) -> None:
    s = setup(tmp_path)
    twice = Seam([Tiny(s), _Named(Tiny(s))])
    with pytest.raises(ValueError, match="same name"):
        twice.tasks()
    with pytest.raises(ValueError, match="claim the command 'sync-now'"):
        twice.commands(host=None)  # type: ignore[arg-type]


class _Named(Capability):
    """Another capability that claims what `inner` claims."""

    name = "copy"

    def __init__(self, inner: Capability) -> None:
        self.inner = inner

    def why_not_configured(self) -> str | None:
        return None

    def tasks(self) -> Sequence[Task]:
        return self.inner.tasks()

    def commands(self, host: Host) -> Mapping[str, Handler]:
        return self.inner.commands(host)


def test_a_new_capability_is_scheduled_and_answered_through_serve(tmp_path: Path) -> None:
    """One new class and one entry in the list: serve() runs its task and answers its command."""
    BUILT.clear()
    clock = VirtualClock(T0)
    state = StateDir(tmp_path / "state")

    async def go() -> tuple[list[str], dict[str, object], list[object], list[object]]:
        async with recording_server() as (address, servicer):
            state.save_credentials(
                Credentials(
                    server=address,
                    agent_id="a1",
                    credential="c",
                    site="shop-1",
                    group="g",
                    ca_file=None,
                    insecure=True,
                ),
                None,
            )
            command = agent_pb2.AgentDirective()
            command.command.id = "c1"
            command.command.kind = agent_pb2.COMMAND_KIND_SYNC_NOW
            servicer.directives = [command]
            servicer.hold_stream = True
            stop = asyncio.Event()
            agent = asyncio.create_task(
                serve(
                    state,
                    stop,
                    config=RunnerConfig(interval_override=60.0),
                    clock=clock,
                    capabilities=[FirebirdBackup, Tiny],
                )
            )
            try:
                await clock.run_until(lambda: bool(servicer.acks))
                await clock.run_until(lambda: "tiny-1" in servicer.reports)
                # The next 21:00 slot of backup.schedule (the default) comes: the task runs.
                await clock.run_until((state.root / "schedule.json").exists)
                clock.set(T0 + dt.timedelta(days=1))
                await clock.run_until(lambda: "tiny-2" in servicer.reports)
            finally:
                stop.set()
                await clock.run_until(agent.done)
                await agent
            [tiny] = BUILT
            return tiny.ran, dict(servicer.reports), servicer.acks, servicer.metadata

    ran, reports, acks, _ = asyncio.run(go())
    assert ran == ["remote", "catch-up"]
    [ack] = acks
    assert isinstance(ack, agent_pb2.AckCommandRequest)
    assert (ack.command_id, ack.outcome, ack.message) == (
        "c1",
        agent_pb2.COMMAND_OUTCOME_SUCCEEDED,
        "synced (True)",
    )
    assert reports["tiny-2"].report.image_sync.files_scanned == 3  # type: ignore[attr-defined]
