"""Benchmark: agent backup and verification against raw gbak, same database, same run.

    flock /tmp/storesafe-bench.lock .venv/bin/python bench/firebird_backup.py --repeat 3

Builds (once, cached under /var/tmp/storesafe-bench) a shop database of at
least --size-mb, then measures, in rounds that run every contender once in a
rotating order (so no contender always goes first or last):
- backup: raw `gbak -b -se localhost:service_mgr`, raw `gbak -b -g -se` (the
  agent runs with -g, no garbage collection), and the agent backup job
  (gbak via services + zstd + sha256 + fsync + manifest) in a child process;
- verification: raw `gbak -c -se` plus full validation (`fbsvcmgr
  action_repair`) vs the agent's (checksum, decompress, restore, full
  validation, counts);
- the shop writer's commit latency: one writer runs through all of its
  rounds; each round holds a no-backup window (as long as the median raw
  gbak), a raw gbak and an agent backup; every commit is attributed to the
  window it started in, so p99s come from commits during the backups only;
- peak RSS of the agent process during a backup (wait4 ru_maxrss).

Fairness: before each timed run the bench deletes the previous outputs and
calls sync(), so nobody's dirty pages are written back during someone else's
run, then waits --settle seconds. The agent child has imported everything
before its clock starts (as a running agent service has). Ratios are medians
of per-round ratios (a slow round slows both contenders of that round);
writer p99s are also pooled over all rounds. The CPU used by processes other
than Firebird, the bench, its children and the writer is measured from
/proc during every timed run and shown as "foreign CPU": figures taken with
foreign CPU much above zero are inflated, re-run them. Linux only; needs
root (or the firebird group) and the server from scripts/setup-firebird.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common.firebird.connection import FirebirdTarget, attach  # noqa: E402
from tests.support.shopsim import ShopWriter, create_shop, percentile  # noqa: E402

CACHE = Path("/var/tmp/storesafe-bench")
RESULTS = REPO / "bench" / "results"
PASSWORD_FILE = Path("/etc/firebird/3.0/SYSDBA.password")
GOALS = {"backup": 1.10, "verify": 1.15, "writer_p99": 1.10, "rss_mib": 100.0}
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Imports first, then "ready"; the job starts when the parent says so.
AGENT_CHILD = """
import json, os, sys, time
from pathlib import Path
from common.firebird.connection import FirebirdTarget
from agent.firebird.jobs import BackupSettings, run_backup_job, run_verify_job
from agent.firebird.retention import RetentionPolicy
from common.clock import SystemClock
target = FirebirdTarget("localhost", sys.argv[2], "SYSDBA", os.environ["STORESAFE_FB_PASSWORD"])
settings = BackupSettings(Path(sys.argv[3]), verify=False, retention=RetentionPolicy(0, 0, 0))
print("ready", flush=True)
sys.stdin.readline()
t0 = time.monotonic()
if sys.argv[1] == "backup":
    out = run_backup_job(target, settings, clock=SystemClock())
else:
    out = run_verify_job(target, settings, sys.argv[4], clock=SystemClock())
t1 = time.monotonic()
print(json.dumps({"t0": t0, "t1": t1, "error": out.error_message,
                  "file": out.details.file, "raw": out.details.size_raw,
                  "compressed": out.details.size_compressed}), flush=True)
"""


@dataclasses.dataclass(frozen=True)
class Run:
    """One timed run: its monotonic window and the foreign CPU seen during it (cores)."""

    t0: float
    t1: float
    foreign: float
    info: dict[str, object] = dataclasses.field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.t1 - self.t0


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


class CpuMeter:
    """CPU used by processes other than ours (Firebird, this bench, its children, the writer)."""

    def __init__(self) -> None:
        out = subprocess.run(["pgrep", "-x", "firebird"], capture_output=True, text=True)
        self.pids = [int(p) for p in out.stdout.split()]
        self.extra: list[int] = []

    def snapshot(self) -> tuple[float, float]:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
        busy = sum(int(v) for i, v in enumerate(fields) if i != 3 and i != 4) / CLK_TCK
        ours = sum(_proc_cpu(pid) for pid in [*self.pids, *self.extra])
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            ours += usage.ru_utime + usage.ru_stime
        return busy, ours

    def foreign(self, before: tuple[float, float], seconds: float) -> float:
        busy, ours = self.snapshot()
        return max(0.0, (busy - before[0]) - (ours - before[1])) / max(seconds, 1e-3)


def _proc_cpu(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(stat[11]) + int(stat[12])) / CLK_TCK


class Bench:
    """The database, the paths and the contenders."""

    def __init__(self, target: FirebirdTarget, pw: str, settle: float, out: Path) -> None:
        self.target, self.pw, self.settle = target, pw, settle
        self.work = out / "work"
        self.backups = out / "backups"
        for folder in (self.work, self.backups):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            shutil.chown(folder, "firebird", "firebird")
        self.raw_fbk = self.work / "raw.fbk"  # kept for the raw verification
        self.cpu = CpuMeter()
        self.rss: list[int] = []
        self.writer_runs: dict[str, list[Run]] = {}

    def env(self) -> dict[str, str]:
        pw = self.pw
        return {**os.environ, "ISC_USER": "SYSDBA", "ISC_PASSWORD": pw, "STORESAFE_FB_PASSWORD": pw}

    def _prepare(self) -> tuple[float, float]:
        os.sync()
        time.sleep(self.settle)
        return self.cpu.snapshot()

    def _cli(self, args: list[str]) -> None:
        subprocess.run(args, env=self.env(), check=True, stdout=subprocess.DEVNULL)

    def raw_backup(self, *, no_gc: bool, keep: bool = False) -> Run:
        out = self.raw_fbk if keep else self.work / "timed.fbk"
        out.unlink(missing_ok=True)
        flags = ["-b", "-g"] if no_gc else ["-b"]
        before = self._prepare()
        t0 = time.monotonic()
        self._cli(["gbak", *flags, "-se", "localhost:service_mgr", self.target.database, str(out)])
        t1 = time.monotonic()
        run = Run(t0, t1, self.cpu.foreign(before, t1 - t0))
        if not keep:
            out.unlink()
        return run

    def raw_verify(self) -> Run:
        scratch = self.work / "scratch.fdb"
        scratch.unlink(missing_ok=True)
        before = self._prepare()
        t0 = time.monotonic()
        self._cli(["gbak", "-c", "-se", "localhost:service_mgr", str(self.raw_fbk), str(scratch)])
        repair = ["action_repair", "dbname", str(scratch), "rpr_validate_db", "rpr_full"]
        self._cli(["fbsvcmgr", "localhost:service_mgr", *repair, "rpr_check_db"])
        t1 = time.monotonic()
        scratch.unlink()
        return Run(t0, t1, self.cpu.foreign(before, t1 - t0))

    def agent(self, mode: str, name: str = "", *, keep: bool = True) -> Run:
        """The agent job in a child process (imports done before its clock starts)."""
        args = [sys.executable, "-c", AGENT_CHILD, mode, self.target.database, str(self.backups)]
        proc = subprocess.Popen(
            [*args, name], env=self.env(), cwd=REPO, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"agent {mode} child did not start")
        before = self._prepare()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        output = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if status != 0:
            raise SystemExit(f"agent {mode} child failed: {output}")
        result = json.loads(output)
        if result["error"]:
            raise SystemExit(f"agent {mode} failed: {result['error']}")
        if mode == "backup":
            self.rss.append(usage.ru_maxrss * 1024)
            if not keep:
                # The report names the bare file (since session 6), `.unverified` until checked.
                file = self.backups / result["file"]
                file.unlink()
                stem = file.name.removesuffix(".unverified").removesuffix(".fbk.zst")
                file.with_name(stem + ".json").unlink()
        t0, t1 = result["t0"], result["t1"]
        return Run(t0, t1, self.cpu.foreign(before, t1 - t0), result)

    def idle(self, seconds: float) -> Run:
        before = self._prepare()
        t0 = time.monotonic()
        time.sleep(seconds)
        t1 = time.monotonic()
        return Run(t0, t1, self.cpu.foreign(before, t1 - t0))


def rounds(
    contenders: dict[str, Callable[[], Run]], count: int, label: str
) -> dict[str, list[Run]]:
    """Run every contender once per round, rotating the order from round to round."""
    names = list(contenders)
    runs: dict[str, list[Run]] = {n: [] for n in names}
    for i in range(count):
        order = names[i % len(names) :] + names[: i % len(names)]
        print(f"{label} round {i + 1}/{count}: {', '.join(order)}", flush=True)
        for name in order:
            runs[name].append(contenders[name]())
    return runs


def paired(a: list[float], b: list[float]) -> float:
    """Median of the per-round ratios a[i]/b[i]: robust when the machine is shared."""
    return statistics.median([x / y for x, y in zip(a, b, strict=True)])


def writer_phase(bench: Bench, count: int, idle_seconds: float) -> dict[str, list[list[float]]]:
    """Per contender, per round: the commit latencies (ms) of transfers started in its window."""
    writer = ShopWriter(bench.target).start()
    bench.cpu.extra = [writer.pid or 0]
    time.sleep(1.0)  # the writer's own start-up is nobody's window
    try:
        runs = rounds(
            {
                "idle": lambda: bench.idle(idle_seconds),
                "raw": lambda: bench.raw_backup(no_gc=False),
                "agent": lambda: bench.agent("backup", keep=False),
            },
            count,
            "writer",
        )
    finally:
        stats = writer.stop()
        bench.cpu.extra = []
    if stats.errors:
        raise SystemExit(f"the writer saw errors: {stats.errors[:3]}")
    bench.writer_runs = runs
    return {name: [stats.between([(r.t0, r.t1)]) for r in rs] for name, rs in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="backup and verify rounds")
    parser.add_argument(
        "--writer-rounds", type=int, default=0, help="writer latency rounds (default 3 x repeat)"
    )
    parser.add_argument("--settle", type=float, default=0.5, help="seconds before each run")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=CACHE,
        help="where raw gbak and the agent write their backups (default: beside the "
        "database; point it at another volume to see the effect of a separate backup disk)",
    )
    args = parser.parse_args()
    writer_rounds = args.writer_rounds or 3 * args.repeat
    pw = password()
    target = FirebirdTarget("localhost", str(CACHE / f"shop-{args.size_mb}mb.fdb"), "SYSDBA", pw)
    db_size = build_database(target, args.size_mb)
    bench = Bench(target, pw, args.settle, args.out_dir)
    load_before = os.getloadavg()
    print(f"database {db_size / 2**20:.0f} MiB; load average {load_before[0]:.2f}; warming up")
    bench.raw_backup(no_gc=True, keep=True)
    bench.agent("backup", keep=False)

    backup = rounds(
        {
            "raw": lambda: bench.raw_backup(no_gc=False),
            "raw_g": lambda: bench.raw_backup(no_gc=True),
            "agent": lambda: bench.agent("backup"),
        },
        args.repeat,
        "backup",
    )
    names = iter([str(r.info["file"]) for r in backup["agent"]])
    verify = rounds(
        {
            "raw_verify": bench.raw_verify,
            "agent_verify": lambda: bench.agent(
                "verify",
                Path(next(names)).name.removesuffix(".unverified").removesuffix(".fbk.zst"),
            ),
        },
        args.repeat,
        "verify",
    )
    idle_seconds = statistics.median(r.seconds for r in backup["raw"])
    latencies = writer_phase(bench, writer_rounds, idle_seconds)
    sizes = (backup["agent"][-1].info["raw"], backup["agent"][-1].info["compressed"])
    report(
        args,
        db_size,
        sizes,
        {**backup, **verify},
        latencies,
        bench,
        (load_before, os.getloadavg()),
    )
    shutil.rmtree(bench.work, ignore_errors=True)
    shutil.rmtree(bench.backups, ignore_errors=True)


def verdict(value: float, goal: float) -> str:
    return f"goal <= {goal:.2f}x: {'met' if value <= goal else 'NOT met'}"


def report(args, db_size, sizes, runs, latencies, bench, loads) -> None:
    t = {k: [r.seconds for r in v] for k, v in runs.items()}
    m = {k: statistics.median(v) for k, v in t.items()}
    lo = {k: min(v) for k, v in t.items()}
    ratio = {
        "agent_vs_raw": paired(t["agent"], t["raw"]),
        "agent_vs_raw_g": paired(t["agent"], t["raw_g"]),
        "raw_g_vs_raw": paired(t["raw_g"], t["raw"]),
        "verify_vs_raw": paired(t["agent_verify"], t["raw_verify"]),
    }
    p99_rounds = {k: [percentile(v, 99) for v in per] for k, per in latencies.items()}
    pooled = {k: [ms for v in per for ms in v] for k, per in latencies.items()}
    p99 = {k: percentile(v, 99) for k, v in pooled.items()}
    p50 = {k: percentile(v, 50) for k, v in pooled.items()}
    p99_ratio = p99["agent"] / p99["raw"]
    p99_paired = paired(p99_rounds["agent"], p99_rounds["raw"])
    rss_mib = max(bench.rss) / 2**20

    def timing(label: str, key: str, base: str, extra: str = "") -> tuple[str, ...]:
        if not base:
            return (label, f"{m[key]:.2f} s", f"{lo[key]:.2f} s", "", "")
        return (
            label,
            f"{m[key]:.2f} s",
            f"{lo[key]:.2f} s",
            f"{paired(t[key], t[base]):.2f}x",
            f"{lo[key] / lo[base]:.2f}x {extra}",
        )

    def writer(label: str, key: str, vs: str) -> tuple[str, ...]:
        n = len(pooled[key])
        per_round = f"{statistics.median(p99_rounds[key]):.1f} ms"
        return (label, f"{p99[key]:.1f} ms", per_round, vs, f"p50 {p50[key]:.1f} ms, n={n}")

    rows = [
        ("", "median", "best", "paired ratio", "best/best"),
        timing("backup: raw gbak -b -se", "raw", ""),
        timing("backup: raw gbak -b -g -se", "raw_g", "raw"),
        timing("backup: agent (gbak -g, zstd, sha256, fsync)", "agent", "raw", "vs -b"),
        timing("verify: raw gbak -c + full validation", "raw_verify", ""),
        timing("verify: agent (sha256, restore, validate, compare)", "agent_verify", "raw_verify"),
        ("writer commit latency", "p99 pooled", "p99 rounds", "ratio", ""),
        writer("writer: no backup", "idle", ""),
        writer("writer: during raw gbak -b", "raw", f"{p99['raw'] / p99['idle']:.2f}x idle"),
        writer("writer: during agent backup", "agent", f"{p99['agent'] / p99['idle']:.2f}x idle"),
        ("agent peak RSS during backup", f"{rss_mib:.1f} MiB", "", "", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print(
        f"\ndatabase {db_size / 2**20:.0f} MiB, backup {sizes[0] / 2**20:.0f} MiB raw, "
        f"{sizes[1] / 2**20:.0f} MiB zstd; {args.repeat} backup/verify rounds, "
        f"{len(latencies['raw'])} writer rounds, order rotated; {os.cpu_count()} CPUs; "
        f"load average {loads[0][0]:.2f} before, {loads[1][0]:.2f} after; backups written to "
        f"{args.out_dir}"
    )
    for name, value, best, r, rb in rows:
        print(f"{name:<{width}}  {value:>10}  {best:>10}  {r:>13}  {rb}")
    foreign = {k: max(r.foreign for r in v) for k, v in runs.items()}
    foreign_writer = {k: max(r.foreign for r in v) for k, v in bench.writer_runs.items()}
    worst = max([*foreign.values(), *foreign_writer.values()])
    print(f"\nforeign CPU during timed runs: at most {worst:.2f} cores", end="")
    print(" (inflated figures: re-run on a quieter machine)" if worst > 0.25 else "")
    goals = [
        ("agent backup vs raw gbak -b", ratio["agent_vs_raw"], GOALS["backup"], ""),
        ("verification vs raw", ratio["verify_vs_raw"], GOALS["verify"], ""),
        (
            "writer p99, agent vs raw gbak",
            p99_ratio,
            GOALS["writer_p99"],
            f" (pooled; median of rounds {p99_paired:.2f}x)",
        ),
    ]
    print("goals (issue 4):")
    for label, value, goal, note in goals:
        print(f"  {label:<30} {value:.2f}x{note}, {verdict(value, goal)}")
    rss_ok = "met" if rss_mib < GOALS["rss_mib"] else "NOT met"
    print(f"  {'agent peak RSS':<30} {rss_mib:.1f} MiB, goal < 100 MiB: {rss_ok}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "firebird_backup.json"
    out.write_text(
        json.dumps(
            {
                "database_bytes": db_size,
                "backup_raw_bytes": sizes[0],
                "backup_compressed_bytes": sizes[1],
                "repeat": args.repeat,
                "out_dir": str(args.out_dir),
                "writer_rounds": len(latencies["raw"]),
                "seconds": t,
                "medians": m,
                "paired_ratios": ratio,
                "foreign_cpu_cores": {k: [r.foreign for r in v] for k, v in runs.items()},
                "writer_foreign_cpu_cores": {
                    k: [r.foreign for r in v] for k, v in bench.writer_runs.items()
                },
                "writer_p99_ms_pooled": p99,
                "writer_p50_ms_pooled": p50,
                "writer_p99_ms_rounds": p99_rounds,
                "writer_p99_agent_vs_raw": p99_ratio,
                "writer_p99_agent_vs_raw_paired": p99_paired,
                "agent_peak_rss_bytes": max(bench.rss),
                "loadavg_before": loads[0],
                "loadavg_after": loads[1],
                "cpus": os.cpu_count(),
                "goals": GOALS,
            },
            indent=2,
        )
    )
    print(f"\nresults written to {out}")


if __name__ == "__main__":
    main()
