"""Peak memory of the agent's database backup upload for a large backup: this tree vs a baseline.

    .venv/bin/python bench/upload_memory.py --gb 2 --baseline /tmp/main-src   # ~400k chunks
    .venv/bin/python bench/upload_memory.py --gb 0.2                          # this tree only

Writes a synthetic backup once (`--gb` GB of random bytes, zstd-compressed as the agent
keeps its backups, with the manifest the backup job writes) under `--dir`, then runs the
agent's upload (agent.firebird.upload.upload_backup) in a fresh process per side, the
baseline's source tree first when given (`git archive main | tar -x -C DIR`): the
streams are decompressed, cut with the BACKUPS profile and their chunk ids computed as
the agent does, against a store that already holds every chunk (MissingChunks answers
none missing, so nothing is sealed or sent: what is measured is what the upload keeps
for the manifest and the commit, not the 8 MiB send batch), and whose CommitSnapshot
reads the references the way the transport does, in messages of 10,000. Per side: the
process's peak RSS (VmHWM) and its RSS after the imports, wall and CPU seconds, chunks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MIB = 1 << 20
BLOCK = 16 * MIB


def status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def build(folder: Path, size: int) -> dict[str, Any]:
    """A zstd-compressed backup of `size` random bytes and its manifest fields (cached)."""
    import zstandard

    name = f"bench-{size}"
    path = folder / f"{name}.fbk.zst"
    facts = folder / f"{name}.json"
    if facts.exists() and path.exists():
        return dict(json.loads(facts.read_text()))
    folder.mkdir(parents=True, exist_ok=True)
    raw, packed = hashlib.sha256(), hashlib.sha256()

    class Hashing:
        def __init__(self, fh: Any) -> None:
            self.fh = fh

        def write(self, data: bytes) -> int:
            packed.update(data)
            return int(self.fh.write(data))

    with open(path, "wb") as fh:
        writer = zstandard.ZstdCompressor(level=1).stream_writer(Hashing(fh), closefd=False)
        left = size
        while left > 0:
            block = os.urandom(min(BLOCK, left))
            raw.update(block)
            writer.write(block)
            left -= len(block)
        writer.close()
    info = {
        "name": name,
        "file": path.name,
        "size_raw": size,
        "size_compressed": path.stat().st_size,
        "sha256": packed.hexdigest(),
        "raw_sha256": raw.hexdigest(),
    }
    facts.write_text(json.dumps(info))
    return info


def child(src: Path, folder: Path, info: dict[str, Any]) -> None:
    """One upload in this process, with the agent code of `src`; figures as JSON."""
    sys.path.insert(0, str(src))
    import datetime as dt

    from agent.domain.offsite import PutChunksResult
    from agent.firebird.files import Manifest, Status
    from agent.firebird.upload import Choice, UploadSettings, upload_backup
    from common.clock import SystemClock
    from common.vault import SiteKeys, new_data_key
    from common.window import UploadWindow

    class Holding:
        """A store holding every chunk; the commit reads the references in messages."""

        references = 0

        def missing(self, ids: Any) -> list[str]:
            return []

        def put(self, chunks: Any) -> PutChunksResult:
            raise AssertionError("nothing is missing, nothing is sent")

        def commit(self, snapshot: Any) -> bool:
            refs = iter(snapshot.references)
            while batch := [r for _, r in zip(range(10_000), refs, strict=False)]:
                self.references += len(batch)
            return False

    now = dt.datetime.now(dt.UTC).isoformat()
    manifest = Manifest(
        name=info["name"],
        file=info["file"],
        database="/db/shop.fdb",
        method="gbak",
        level=0,
        started_at=now,
        finished_at=now,
        size_raw=info["size_raw"],
        size_compressed=info["size_compressed"],
        sha256=info["sha256"],
        raw_sha256=info["raw_sha256"],
        run_id="run-bench",
        status=Status.GOOD,
    )
    store = Holding()
    after_imports = status_kib("VmRSS")
    cpu, started = time.process_time(), time.perf_counter()
    details = upload_backup(
        Choice(manifest),
        folder,
        UploadSettings(UploadWindow.parse("")),
        SiteKeys.derive("bench-site", new_data_key()),
        store,
        spool_dir=folder / "spool",
        clock=SystemClock(),
        sleep=time.sleep,
    )
    assert details.complete, details
    print(
        json.dumps(
            {
                "peak_rss_kib": status_kib("VmHWM"),
                "rss_after_imports_kib": after_imports,
                "seconds": time.perf_counter() - started,
                "cpu_s": time.process_time() - cpu,
                "chunks_present": details.chunks_present,
                "references": store.references,
            }
        )
    )


def run_side(src: Path, folder: Path, gb: float) -> dict[str, Any]:
    args = [sys.executable, __file__, "--child", str(src), "--dir", str(folder)]
    args += ["--gb", str(gb)]
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the upload with {src} failed: {done.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    out["process_s"] = time.perf_counter() - started
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--gb", type=float, default=2.0, help="backup size (uncompressed), GB")
    ap.add_argument("--baseline", type=Path, help="a source tree to compare with (e.g. main)")
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp/storesafe-upload-memory"))
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    size = int(args.gb * 1e9)
    if args.child is not None:
        info = json.loads((args.dir / f"bench-{size}.json").read_text())
        child(args.child, args.dir, info)
        return
    if size <= 0:
        ap.error("--gb must be positive")
    print(f"1-minute load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    t = time.perf_counter()
    info = build(args.dir, size)
    print(f"backup: {info['file']} ({size / 1e9:.2f} GB) ready in {time.perf_counter() - t:.0f} s")
    root = Path(__file__).resolve().parent.parent
    sides = [("baseline", args.baseline)] if args.baseline else []
    sides.append(("this tree", root))
    rows = []
    for label, src in sides:
        r = run_side(src, args.dir, args.gb)
        rows.append((label, r))
        print(
            f"{label:>10}: peak RSS {r['peak_rss_kib'] / 1024:.0f} MiB (after imports "
            f"{r['rss_after_imports_kib'] / 1024:.0f} MiB), {r['seconds']:.1f} s, CPU "
            f"{r['cpu_s']:.1f} s, {r['chunks_present']:,} chunks, "
            f"{r['references']:,} distinct references",
            flush=True,
        )
    print(f"1-minute load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
