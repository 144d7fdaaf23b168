"""Benchmark: agent backup and verification against raw gbak, same database, same run.

    .venv/bin/python bench/firebird_backup.py --size-mb 200 [--repeat 3]

Builds (once, cached under /var/tmp/storesafe-bench) a shop database of at
least --size-mb, then measures side by side, alternating the contenders:
- agent backup (gbak via services + zstd + sha256 + fsync + manifest) vs raw
  `gbak -b -se localhost:service_mgr` (and `-g`, which is what the agent runs);
- agent verification (checksum, decompress, restore, full validation, counts)
  vs raw `gbak -c -se` plus full validation (`fbsvcmgr action_repair`);
- the shop writer's p99 commit latency with no backup, during raw gbak, and
  during the agent backup;
- peak RSS of the agent process during a backup (wait4 ru_maxrss).
Each round runs every contender once, back to back; the table shows medians,
best times, and the median of the per-round ratios (robust on a shared box).
Needs root (or the firebird group) and the server from scripts/setup-firebird.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.firebird.connection import FirebirdTarget, attach  # noqa: E402
from agent.firebird.shopsim import ShopWriter, WriterStats, create_shop  # noqa: E402

CACHE = Path("/var/tmp/storesafe-bench")
RESULTS = REPO / "bench" / "results"
PASSWORD_FILE = Path("/etc/firebird/3.0/SYSDBA.password")

AGENT_CHILD = """
import json, os, sys, time
from pathlib import Path
from agent.firebird.connection import FirebirdTarget
from agent.firebird.jobs import BackupSettings, run_backup_job, run_verify_job
from agent.firebird.retention import RetentionPolicy
from common.clock import SystemClock
target = FirebirdTarget("localhost", sys.argv[2], "SYSDBA", os.environ["STORESAFE_FB_PASSWORD"])
settings = BackupSettings(Path(sys.argv[3]), verify=False, retention=RetentionPolicy(0, 0, 0))
t0 = time.perf_counter()
if sys.argv[1] == "backup":
    out = run_backup_job(target, settings, clock=SystemClock())
else:
    out = run_verify_job(target, settings, sys.argv[4], clock=SystemClock())
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "error": out.error_message,
                  "file": out.details.file, "raw": out.details.size_raw,
                  "compressed": out.details.size_compressed}))
"""


def password() -> str:
    if os.environ.get("STORESAFE_FB_PASSWORD"):
        return os.environ["STORESAFE_FB_PASSWORD"]
    for line in PASSWORD_FILE.read_text().splitlines():
        if line.startswith("ISC_PASSWORD="):
            return line.split("=", 1)[1].strip().strip('"')
    raise SystemExit(f"no password in {PASSWORD_FILE}; set STORESAFE_FB_PASSWORD")


def build_database(target: FirebirdTarget, size_mb: int) -> int:
    db = Path(target.database)
    if db.exists() and db.stat().st_size < size_mb * 2**20:
        db.unlink()  # cached by an older, smaller recipe
    if not db.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        shutil.chown(CACHE, "firebird", "firebird")
        print(f"building a {size_mb} MB shop database at {db} (once) ...", flush=True)
        t0 = time.perf_counter()
        create_shop(target, accounts=1000, filler_mb=int(size_mb * 1.1) + 1)
        print(f"  built in {time.perf_counter() - t0:.0f} s", flush=True)
    with attach(target) as con:
        return int(con.page_size) * int(con.db_info(64))  # isc_info_db_size_in_pages


def fb_env(pw: str) -> dict[str, str]:
    return {**os.environ, "ISC_USER": "SYSDBA", "ISC_PASSWORD": pw, "STORESAFE_FB_PASSWORD": pw}


def run_cli(args: list[str], pw: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, env=fb_env(pw), check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def raw_backup(db: str, out: Path, pw: str, *, no_gc: bool) -> float:
    out.unlink(missing_ok=True)
    flags = ["-b", "-g"] if no_gc else ["-b"]
    seconds = run_cli(["gbak", *flags, "-se", "localhost:service_mgr", db, str(out)], pw)
    return seconds


def raw_verify(fbk: Path, scratch: Path, pw: str) -> float:
    scratch.unlink(missing_ok=True)
    t0 = time.perf_counter()
    run_cli(["gbak", "-c", "-se", "localhost:service_mgr", str(fbk), str(scratch)], pw)
    run_cli(
        [
            "fbsvcmgr",
            "localhost:service_mgr",
            "action_repair",
            "dbname",
            str(scratch),
            "rpr_validate_db",
            "rpr_full",
            "rpr_check_db",
        ],
        pw,
    )
    seconds = time.perf_counter() - t0
    scratch.unlink(missing_ok=True)
    return seconds


def agent(mode: str, db: str, backup_dir: Path, pw: str, name: str = "") -> tuple[dict, int]:
    """Run the agent job in a child process; return its JSON and peak RSS in bytes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", AGENT_CHILD, mode, db, str(backup_dir), name],
        env=fb_env(pw),
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"agent {mode} child failed: {output}")
    result = json.loads(output)
    if result["error"]:
        raise SystemExit(f"agent {mode} failed: {result['error']}")
    return result, usage.ru_maxrss * 1024


def with_writer(target: FirebirdTarget, action) -> tuple[float, WriterStats]:
    writer = ShopWriter(target).start()
    time.sleep(0.5)
    try:
        seconds = action()
    finally:
        stats = writer.stop()
    if stats.errors:
        raise SystemExit(f"the writer saw errors: {stats.errors[:3]}")
    return seconds, stats


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pw = password()
    target = FirebirdTarget("localhost", str(CACHE / f"shop-{args.size_mb}mb.fdb"), "SYSDBA", pw)
    db_size = build_database(target, args.size_mb)
    work = CACHE / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    shutil.chown(work, "firebird", "firebird")
    backups = CACHE / "backups"
    shutil.rmtree(backups, ignore_errors=True)
    backups.mkdir()
    raw_fbk = work / "raw.fbk"
    print(f"database {db_size / 2**20:.0f} MiB; warming up ...", flush=True)
    raw_backup(target.database, raw_fbk, pw, no_gc=True)

    t: dict[str, list[float]] = {
        k: [] for k in ("raw", "raw_g", "agent", "raw_verify", "agent_verify")
    }
    rss: list[int] = []
    names: list[str] = []
    for i in range(args.repeat):
        print(f"round {i + 1}/{args.repeat}: backups", flush=True)
        t["raw"].append(raw_backup(target.database, raw_fbk, pw, no_gc=False))
        result, peak = agent("backup", target.database, backups, pw)
        t["agent"].append(result["seconds"])
        rss.append(peak)
        names.append(Path(result["file"]).name.removesuffix(".fbk.zst"))
        t["raw_g"].append(raw_backup(target.database, raw_fbk, pw, no_gc=True))
    sizes = (result["raw"], result["compressed"])
    for i in range(args.repeat):
        print(f"round {i + 1}/{args.repeat}: verification", flush=True)
        t["raw_verify"].append(raw_verify(raw_fbk, work / "scratch.fdb", pw))
        verified, _ = agent("verify", target.database, backups, pw, names[i])
        t["agent_verify"].append(verified["seconds"])

    print("writer latency phases", flush=True)
    quiet_for = median(t["raw"])
    phases: dict[str, list[WriterStats]] = {"idle": [], "raw": [], "agent": []}
    for _ in range(args.repeat):
        phases["idle"].append(with_writer(target, lambda: time.sleep(quiet_for) or quiet_for)[1])
        phases["raw"].append(
            with_writer(target, lambda: raw_backup(target.database, raw_fbk, pw, no_gc=False))[1]
        )
        phases["agent"].append(
            with_writer(
                target, lambda: agent("backup", target.database, backups, pw)[0]["seconds"]
            )[1]
        )
    report(args, db_size, sizes, t, rss, phases)
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(backups, ignore_errors=True)


def paired(a: list[float], b: list[float]) -> float:
    """Median of the per-round ratios a[i]/b[i]: robust when the machine is shared."""
    return median([x / y for x, y in zip(a, b, strict=True)])


def report(args, db_size, sizes, t, rss, phases) -> None:
    m = {k: median(v) for k, v in t.items()}
    lo = {k: min(v) for k, v in t.items()}
    p99 = {k: [s.percentile(99) for s in v] for k, v in phases.items()}
    pm = {k: median(v) for k, v in p99.items()}

    def timing(label: str, key: str, base: str | None, note: str = "") -> tuple[str, ...]:
        if base is None:
            return (label, f"{m[key]:.2f} s", f"{lo[key]:.2f} s", "", "")
        return (
            label,
            f"{m[key]:.2f} s",
            f"{lo[key]:.2f} s",
            f"{paired(t[key], t[base]):.2f}x",
            f"{lo[key] / lo[base]:.2f}x{note}",
        )

    rows = [
        ("", "median", "best", "paired", "best/best"),
        timing("backup: raw gbak -b -se", "raw", None),
        timing("backup: raw gbak -b -g -se", "raw_g", "raw"),
        timing("backup: agent (gbak -g, zstd, sha256, fsync)", "agent", "raw", " vs -b"),
        timing("verify: raw gbak -c + full validation", "raw_verify", None),
        timing("verify: agent (sha256, restore, validate, compare)", "agent_verify", "raw_verify"),
        ("writer p99: no backup", f"{pm['idle']:.1f} ms", f"{min(p99['idle']):.1f} ms", "", ""),
        (
            "writer p99: during raw gbak",
            f"{pm['raw']:.1f} ms",
            f"{min(p99['raw']):.1f} ms",
            f"{paired(p99['raw'], p99['idle']):.2f}x idle",
            "",
        ),
        (
            "writer p99: during agent backup",
            f"{pm['agent']:.1f} ms",
            f"{min(p99['agent']):.1f} ms",
            f"{paired(p99['agent'], p99['raw']):.2f}x raw",
            f"{paired(p99['agent'], p99['idle']):.2f}x idle",
        ),
        ("agent peak RSS during backup", f"{max(rss) / 2**20:.1f} MiB", "", "goal < 100 MiB", ""),
    ]
    width = max(len(r[0]) for r in rows)
    load = os.getloadavg()
    print(
        f"\ndatabase {db_size / 2**20:.0f} MiB, backup {sizes[0] / 2**20:.0f} MiB raw, "
        f"{sizes[1] / 2**20:.0f} MiB zstd; {args.repeat} rounds, contenders alternated; "
        f"{os.cpu_count()} CPUs, load average {load[0]:.1f} (5 min {load[1]:.1f})"
    )
    for name, value, best, ratio, ratio_best in rows:
        print(f"{name:<{width}}  {value:>10}  {best:>10}  {ratio:>15}  {ratio_best}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "firebird_backup.json"
    out.write_text(
        json.dumps(
            {
                "database_bytes": db_size,
                "backup_raw_bytes": sizes[0],
                "backup_compressed_bytes": sizes[1],
                "repeat": args.repeat,
                "seconds": t,
                "medians": m,
                "loadavg": load,
                "cpus": os.cpu_count(),
                "writer_p99_ms": p99,
                "paired_ratios": {
                    "agent_vs_raw": paired(t["agent"], t["raw"]),
                    "agent_vs_raw_g": paired(t["agent"], t["raw_g"]),
                    "verify_vs_raw": paired(t["agent_verify"], t["raw_verify"]),
                    "p99_agent_vs_raw": paired(p99["agent"], p99["raw"]),
                },
                "agent_peak_rss_bytes": max(rss),
            },
            indent=2,
        )
    )
    print(f"\nresults written to {out}")


if __name__ == "__main__":
    main()
