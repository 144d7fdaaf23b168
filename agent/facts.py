"""Facts about the machine the agent runs on: host, OS, disk space, clock."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import platform
import socket
from collections.abc import Mapping
from pathlib import Path

import psutil

from agent.domain.reports import DiskUsage
from common.clock import Clock
from common.version import VERSION

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class HostFacts:
    """One snapshot of the host, as sent at check-in."""

    hostname: str
    os: str
    agent_version: str
    agent_time: dt.datetime
    disks: tuple[DiskUsage, ...]


def hostname() -> str:
    """This machine's name as the technician knows it."""
    return socket.gethostname() or platform.node() or "unknown"


def os_string() -> str:
    """A short OS description, e.g. "Windows 10 (10.0.19045)" or "Linux 6.1.0 (Debian ...)"."""
    system = platform.system() or "unknown"
    if system == "Windows":
        release, version, _csd, _ptype = platform.win32_ver()
        return f"Windows {release} ({version})".strip()
    if system == "Linux":
        try:
            pretty = platform.freedesktop_os_release().get("PRETTY_NAME", "")
        except OSError:
            pretty = ""
        suffix = f" ({pretty})" if pretty else ""
        return f"Linux {platform.release()}{suffix}"
    return f"{system} {platform.release()}".strip()


def disk_usage(label: str, path: Path) -> DiskUsage | None:
    """Space on the volume holding `path` (or its nearest existing parent); None if unknown."""
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        usage = psutil.disk_usage(str(probe))
    except OSError as exc:
        log.warning("cannot read disk usage of %s (%s): %s", label, path, exc)
        return None
    return DiskUsage(label=label, path=str(path), total_bytes=usage.total, free_bytes=usage.free)


def collect(clock: Clock, volumes: Mapping[str, Path]) -> HostFacts:
    """Gather host facts; `volumes` maps a label ("state", "data", "backup") to a path."""
    disks = tuple(d for label, path in volumes.items() if (d := disk_usage(label, path)))
    return HostFacts(
        hostname=hostname(),
        os=os_string(),
        agent_version=VERSION,
        agent_time=clock.now(),
        disks=disks,
    )
