"""Image-folder re-scan with nothing changed: the StoreSafe scanner vs `restic backup`.

    .venv/bin/python bench/image_scan.py                  # 100,000 small files
    .venv/bin/python bench/image_scan.py --files 10000 --quick
    .venv/bin/python bench/image_scan.py --sparse-gb 2    # also: read one 2 GB sparse file

Builds a folder of --files small files of random bytes (--per-dir files a folder), then:

- scanner: a first pass (settle 0; the consumer hashes each file with sha256 and returns
  the digest as its content id), then --repeat no-change passes, each in a fresh process
  (`python bench/image_scan.py --child ...`): that process's wall time (interpreter start,
  index open, walk, merge, result) is what is compared, its peak RSS is reported, and the
  time of `Scanner.scan` alone is shown too;
- restic (Debian's package, `apt-get install -y restic`): `restic init`, a first `restic
  backup` (encrypting, as restic always does), then --repeat no-change `restic backup`
  runs of the same folder, each a fresh process, with its cache in the work dir.

Goal (issue 13): a no-change re-sync of 100,000 files takes at most 0.5x restic's time.
Medians are compared. Both sides run in the same run on the same files, one at a time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import benchlib


def build(folder: Path, files: int, per_dir: int, seed: int = 13) -> int:
    """`files` files of 200..4,000 random bytes; total bytes."""
    rng = random.Random(seed)
    total = 0
    for i in range(files):
        sub = folder / f"{i // per_dir:04d}"
        if i % per_dir == 0:
            sub.mkdir(parents=True, exist_ok=True)
        size = rng.randint(200, 4000)
        (sub / f"scan-{i:06d}.jpg").write_bytes(rng.randbytes(size))
        total += size
    return total


def run_measured(args: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Run a process; wall seconds, its peak RSS in KiB, its stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read().decode()
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{args[0]} failed ({proc.returncode}): {err.strip()[-2000:]}")
    return wall, usage.ru_maxrss, out


def child(state: Path, folder: Path) -> None:
    """One scanner pass in this process; prints its figures as JSON."""
    from agent.images.index import INDEX_FILE, ImageIndex
    from agent.images.scanner import Scanner
    from common.clock import SystemClock

    class Sha256Consumer:
        def store(self, file: Any, stream: Any) -> list[str]:
            digest = hashlib.sha256()
            for block in stream:
                digest.update(block)
            return [digest.hexdigest()]

        def discard(self, file: Any, reason: str) -> None:
            pass

    with ImageIndex(state / INDEX_FILE) as index:
        start = time.perf_counter()
        result = Scanner(index, str(folder), settle_seconds=0, clock=SystemClock()).scan(
            Sha256Consumer()
        )
        seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "scan_s": seconds,
                "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "files_seen": result.files_seen,
                "unchanged": result.unchanged,
                "stored": result.stored,
                "bytes_read": result.bytes_read,
                "failed": result.failed,
                "skipped": {str(k): v for k, v in result.skipped.items()},
            }
        )
    )


def scanner_pass(state: Path, folder: Path) -> tuple[float, int, dict[str, Any]]:
    wall, rss, out = run_measured(
        [sys.executable, __file__, "--child", "--state", str(state), "--folder", str(folder)]
    )
    return wall, rss, json.loads(out)


def restic_pass(env: dict[str, str], folder: Path) -> tuple[float, int]:
    wall, rss, _ = run_measured(["restic", "backup", "--quiet", str(folder)], env)
    return wall, rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--per-dir", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sparse-gb", type=float, default=0)
    ap.add_argument("--work", type=Path, help="work dir (kept); default a temp dir, removed")
    ap.add_argument("--quick", action="store_true", help="10,000 files, 2 repeats")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.state, args.folder)
        return
    if args.quick:
        args.files, args.repeat = min(args.files, 10_000), 2
    if shutil.which("restic") is None:
        raise SystemExit("restic is not installed: apt-get install -y restic")
    work = args.work or Path(tempfile.mkdtemp(prefix="image-scan-"))
    try:
        report = run(args, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    name = "image-scan-quick.json" if args.quick else "image-scan.json"
    print(f"\nwritten: {benchlib.write_json(name, report)}")


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    folder, state = work / "Images", work / "state"
    state.mkdir(parents=True, exist_ok=True)
    if not folder.exists():
        t = time.perf_counter()
        total = build(folder, args.files, args.per_dir)
        took = time.perf_counter() - t
        print(f"built {args.files:,} files ({total / 1e6:.1f} MB) in {took:.1f} s")
    env = dict(os.environ)
    env.update(
        RESTIC_REPOSITORY=str(work / "restic-repo"),
        RESTIC_PASSWORD="bench-image-scan",
        RESTIC_CACHE_DIR=str(work / "restic-cache"),
    )
    if not (work / "restic-repo").exists():
        run_measured(["restic", "init", "--quiet"], env)

    first_wall, first_rss, first = scanner_pass(state, folder)
    assert first["files_seen"] == args.files and not first["failed"], first
    restic_first_wall, restic_first_rss = restic_pass(env, folder)
    print(f"first pass: scanner {first_wall:.1f} s, restic {restic_first_wall:.1f} s")

    scans, restics = [], []
    for _ in range(args.repeat):  # interleaved, so load on the box hits both alike
        wall, rss, figures = scanner_pass(state, folder)
        assert figures["unchanged"] == args.files and figures["bytes_read"] == 0, figures
        scans.append((wall, rss, figures["scan_s"]))
        restics.append(restic_pass(env, folder))
    scan_wall = statistics.median(s[0] for s in scans)
    scan_only = statistics.median(s[2] for s in scans)
    restic_wall = statistics.median(r[0] for r in restics)
    scan_rss = max(s[1] for s in scans) / 1024
    rows = [
        ["scanner (process)", scan_wall, scan_rss, f"{scan_wall / restic_wall:.2f}"],
        ["  Scanner.scan alone", scan_only, "", f"{scan_only / restic_wall:.2f}"],
        ["restic backup", restic_wall, max(r[1] for r in restics) / 1024, "1.00"],
    ]
    print(f"\nno-change re-scan of {args.files:,} files, median of {args.repeat}:")
    print(benchlib.table(["", "seconds", "peak RSS MiB", "x restic"], rows))
    load = os.getloadavg()[0]
    high = "  (high: wall times inflated)" if load > 1.5 else ""
    print(f"1-minute load average: {load:.2f}{high}")
    report: dict[str, Any] = {
        "machine": benchlib.machine(),
        "files": args.files,
        "per_dir": args.per_dir,
        "repeat": args.repeat,
        "load_1m": load,
        "first_pass": {
            "scanner_s": first_wall,
            "scanner_rss_kib": first_rss,
            "restic_s": restic_first_wall,
            "restic_rss_kib": restic_first_rss,
        },
        "no_change": {
            "scanner_s": [s[0] for s in scans],
            "scanner_scan_only_s": [s[2] for s in scans],
            "scanner_rss_kib": [s[1] for s in scans],
            "restic_s": [r[0] for r in restics],
            "restic_rss_kib": [r[1] for r in restics],
            "ratio": scan_wall / restic_wall,
        },
    }
    if args.sparse_gb:
        report["sparse"] = sparse(work, args.sparse_gb)
    return report


def sparse(work: Path, gb: float) -> dict[str, Any]:
    """Scan a folder holding one sparse file of `gb` GB: time and the scanner's peak RSS."""
    folder, state = work / "Sparse", work / "sparse-state"
    folder.mkdir(exist_ok=True)
    state.mkdir(exist_ok=True)
    size = int(gb * 1024**3)
    with open(folder / "big.tif", "wb") as f:
        f.truncate(size)
    wall, rss, figures = scanner_pass(state, folder)
    assert figures["stored"] == 1 and figures["bytes_read"] == size, figures
    print(f"sparse {gb:g} GB file: read and hashed in {wall:.1f} s, peak RSS {rss / 1024:.0f} MiB")
    return {
        "gb": gb,
        "seconds": wall,
        "scan_s": figures["scan_s"],
        "rss_kib": rss,
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


if __name__ == "__main__":
    main()
