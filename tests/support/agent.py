"""Enroll and run real `storesafe-agent` processes against a test server."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.capability import Setup
from agent.configsync import ConfigStore
from agent.domain.offsite import StoreLink
from agent.images.capability import ImageSync
from agent.main import local_status
from agent.settings import StateDir
from agent.transport.link import ServerLink
from agent.transport.store import StoreCalls
from common.clock import SystemClock
from common.vault import FleetPrivateKey
from tests.support.server import BIN, ServerHandle, create_enrollment_token

AGENT = str(BIN / "storesafe-agent")


def agent_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run one `storesafe-agent` command to completion."""
    return subprocess.run(
        [AGENT, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def enroll_with_token(
    server: ServerHandle, token: str, site: str, state_dir: Path, *, ca: bool = True
) -> subprocess.CompletedProcess[str]:
    """`storesafe-agent enroll` with `token` (and the server's CA unless `ca` is False)."""
    args = ["enroll", "--server", server.address, "--token", token, "--site", site]
    args += ["--state-dir", str(state_dir)]
    if ca:
        args += ["--ca", str(server.ca_path)]
    return agent_cli(*args)


def enroll_agent(
    server: ServerHandle, state_dir: Path, site: str, group: str = "default"
) -> subprocess.CompletedProcess[str]:
    """Create a token and enroll an agent for `site` into `state_dir`."""
    return enroll_with_token(server, create_enrollment_token(server, site, group), site, state_dir)


def image_sync_for(
    server: ServerHandle, state: StateDir, site: str, folder: Path
) -> Callable[[Callable[[StoreLink], StoreLink]], ImageSync]:
    """Enroll `site` into `state`, set it to sync `folder` at once; an in-process ImageSync
    capability whose store links (the real transport) are wrapped by the argument."""
    assert enroll_agent(server, state.root, site).returncode == 0
    creds = state.load_credentials()
    config = ConfigStore(state.root)
    values = {
        "images.dir": str(folder),
        "images.settle_seconds": 0,
        "upload.recovery_key": FleetPrivateKey.generate().public.text,
    }
    config.apply(1, values)  # type: ignore[arg-type]

    def make(wrap: Callable[[StoreLink], StoreLink]) -> ImageSync:
        def connect() -> StoreLink:
            return wrap(StoreCalls(ServerLink.for_agent(state, creds)))

        setup = Setup(
            config=config, clock=SystemClock(), state_dir=state.root, site=site, store_link=connect
        )
        return ImageSync(setup)

    return make


@dataclasses.dataclass
class AgentProcess:
    """A running `storesafe-agent run`; its log goes to state_dir/agent-run.log."""

    state_dir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(
        cls, state_dir: Path, *, interval: float = 0.5, retry_max: float = 1.0
    ) -> AgentProcess:
        log_path = state_dir / "agent-run.log"
        log = log_path.open("ab")
        proc = subprocess.Popen(
            [
                AGENT,
                "run",
                "--state-dir",
                str(state_dir),
                "--interval",
                str(interval),
                "--retry-max",
                str(retry_max),
            ],
            stdout=log,
            stderr=log,
        )
        return cls(state_dir=state_dir, proc=proc, log_path=log_path)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def status(self) -> dict[str, Any]:
        """What `storesafe-agent status --json` shows, read in this process (fast to poll)."""
        return local_status(StateDir(self.state_dir))

    def status_cli(self) -> dict[str, Any]:
        """`storesafe-agent status --json` itself."""
        done = agent_cli("status", "--json", "--state-dir", str(self.state_dir))
        assert done.returncode == 0, done.stderr
        data: dict[str, Any] = json.loads(done.stdout)
        return data

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


def wait_for(cond: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll `cond` until it holds, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
