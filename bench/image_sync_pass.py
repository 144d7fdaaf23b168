"""One image-sync pass of the agent's capability, for bench/image_sync.py: its figures as JSON.

A process of its own that imports what the agent imports and nothing of the
benchmark's (psutil, its gRPC admin calls), so its wall and CPU time are the
pass's: interpreter start, imports, site key check, the pass, the report.

    .venv/bin/python bench/image_sync_pass.py --state DIR --site SITE --folder DIR \\
        --recovery-key KEY --server HOST:PORT [--src TREE]

`--src` runs the agent code of another source tree (a baseline, e.g. `git archive main`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def vm_hwm_kib() -> int:
    """This process's peak RSS (VmHWM) in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    """One image-sync pass of the agent's capability; prints its figures as JSON."""
    ap = argparse.ArgumentParser(description=__doc__)
    for name in ("--state", "--folder"):
        ap.add_argument(name, type=Path, required=True)
    for name in ("--site", "--recovery-key", "--server"):
        ap.add_argument(name, required=True)
    ap.add_argument("--src", type=Path, default=ROOT, help="the source tree of the agent code")
    args = ap.parse_args()
    sys.path.insert(0, str(args.src))
    from agent.capability import Setup
    from agent.configsync import ConfigStore
    from agent.images.capability import ImageSync
    from agent.settings import StateDir
    from agent.transport.link import ServerLink
    from agent.transport.store import StoreCalls
    from common.clock import SystemClock
    from common.memory import AGENT_TRIM_THRESHOLD, keep_large_buffers

    keep_large_buffers(AGENT_TRIM_THRESHOLD)  # as the agent process does (`storesafe-agent run`)

    state = StateDir(args.state)
    creds = dataclasses.replace(state.load_credentials(), server=args.server)
    config = ConfigStore(state.root)
    values = {
        "images.dir": str(args.folder),
        "images.settle_seconds": 0,
        "upload.recovery_key": args.recovery_key,
    }
    config.apply(config.current.revision + 1, values)  # type: ignore[arg-type]
    setup = Setup(
        config=config,
        clock=SystemClock(),
        state_dir=state.root,
        site=args.site,
        store_link=lambda: StoreCalls(ServerLink.for_agent(state, creds)),
    )
    started = time.perf_counter()
    report = asyncio.run(ImageSync(setup).sync("local"))
    seconds = time.perf_counter() - started
    d = report.details
    print(
        json.dumps(
            {
                "pass_s": seconds,
                "outcome": report.outcome.value,
                "error": report.error_message,
                "files_scanned": getattr(d, "files_scanned", 0),
                "files_copied": getattr(d, "files_copied", 0),
                "files_changed": getattr(d, "files_changed", 0),
                "bytes_read": getattr(d, "bytes_read", 0),
                "bytes_sent": getattr(d, "bytes_copied", 0),
                "chunks_sent": getattr(d, "chunks_sent", 0),
                "snapshot_id": getattr(d, "snapshot_id", ""),
                "hwm_kib": vm_hwm_kib(),
            }
        )
    )


if __name__ == "__main__":
    main()
