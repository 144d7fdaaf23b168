"""Image sync end to end (the agent's real pass, real gRPC, a real server) vs `restic backup`.

    .venv/bin/python bench/image_sync.py                 # the issue-13 figures, a few minutes
    .venv/bin/python bench/image_sync.py --quick         # smoke run, about a minute
    .venv/bin/python bench/image_sync.py --only first,ingest --files 5000

One `storesafe-server serve` (TLS on loopback, its embedded SQLite, the filesystem store
under the work dir) runs for the whole benchmark. Each agent pass is a fresh process
(`bench/image_sync_pass.py`: it imports what the agent imports, none of the benchmark's
modules) that runs the image-sync capability exactly as the agent does
(agent.images.capability.ImageSync: site key registration, the pass at low CPU and IO
priority in a worker thread, uploads through agent.transport to the server); its wall
time, CPU time (wait4) and peak RSS (the kernel's VmHWM: reported by the pass at its end,
and read from /proc every 20 ms for restic) are its own; ru_maxrss is in the JSON but not
used (it includes the spawning benchmark's RSS). restic (Debian's package; `apt-get
install -y restic`) backs up the same folder into a local repository (encrypting,
compressing where it pays, as it always does), each run a fresh process, by default at
the same CPU and IO priority as the agent's pass (`--restic-priority normal`: normal).
`--reuse` (with `--only nochange`) keeps the server, the folder, the agent's site and
restic's repository in `--dir`/storesafe-image-sync-reuse, so later runs skip the
slow first syncs.

Phases (`--only` picks some; each prints its table, all go into one JSON file):

  first    first sync of --files files of random bytes (sizes like scans: --min-kib to
           --max-kib, skewed to the small end, plus --large files of 8-32 MiB): agent
           (fresh site) vs restic (fresh repository); goal at most 1.0x restic.
  changed  then --change-pct % of those files rewritten (same size, new bytes), and a
           re-sync of each; goal at most 1.0x restic.
  nochange --resync-files small files (1-8 KiB), a first sync of each side (shown), then
           --repeat no-change re-syncs of each, interleaved; goal at most 0.5x restic.
  big      one pass over a folder holding one --big-gb GB file of random bytes (its
           peak RSS; restic is not run). Goal, over every agent pass: under 150 MB.
  ingest   --agents processes, each an enrolled agent of its own site, seal --ingest-mib
           MiB of image-like chunks in memory first, then at one signal send them with the
           agent's uploader (Uploader.send_sealed: MissingChunks, PutChunks in 8 MiB
           batches) at once; against the same number and sizes of blobs written straight
           into the server's filesystem backend (Backend.create, --agents threads; as
           bench/store_write.py). In the same round the same processes send the same
           sealed bytes to three bare grpc.aio servers (bench/ingest_floor.py, the real
           server's certificate and gRPC options): the transport floor (decode, answer)
           and two store floors (also the sha256 check of each blob, and Backend.create
           of each, or one Backend.create_many a stream as the server's store writes).
           --ingest-rounds rounds, the order of the five rows reversed every other round;
           medians per column. Goal: ingest at least 0.5x the backend's MiB/s.

Server CPU is the server process's and its children's (psutil), measured per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import benchlib
import psutil

sys.path.insert(0, str(benchlib.ROOT))

MIB = 1 << 20
KIB = 1 << 10
RSS_GOAL_MB = 150
PHASES = ("first", "changed", "nochange", "big", "ingest")
PASSWORD = "bench-image-sync"
PASS_SCRIPT = Path(__file__).with_name("image_sync_pass.py")
INGEST_BATCH = 8 * MIB  # the ingest phase's batches, as its earlier figures were measured
FLOOR_SCRIPT = Path(__file__).with_name("ingest_floor.py")


# -- data ---------------------------------------------------------------------------


def scan_sizes(count: int, min_kib: int, max_kib: int, large: int, seed: int) -> list[int]:
    """Sizes like a scan folder: log-spread from min to max, skewed to the small end (median
    about 3x min), and `large` files of 8-32 MiB."""
    rng = random.Random(seed)
    lo, hi = math.log(min_kib * KIB), math.log(max_kib * KIB)
    sizes = [int(math.exp(lo + rng.random() ** 2 * (hi - lo))) for _ in range(count - large)]
    sizes += [rng.randint(8 * MIB, 32 * MIB) for _ in range(min(large, count))]
    rng.shuffle(sizes)
    return sizes


def write_folder(folder: Path, sizes: Sequence[int], per_dir: int, ext: str = "jpg") -> int:
    """Files of random bytes (incompressible); total bytes."""
    total = 0
    for i, size in enumerate(sizes):
        sub = folder / f"{i // per_dir:04d}"
        if i % per_dir == 0:
            sub.mkdir(parents=True, exist_ok=True)
        (sub / f"scan-{i:06d}.{ext}").write_bytes(os.urandom(size))
        total += size
    return total


def rewrite_some(folder: Path, pct: float, seed: int) -> tuple[int, int]:
    """Rewrite `pct` % of the files with new random bytes of the same size (mtime moves)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    rng = random.Random(seed)
    chosen = rng.sample(files, max(1, round(len(files) * pct / 100)))
    total = 0
    for path in chosen:
        size = path.stat().st_size
        path.write_bytes(os.urandom(size))
        total += size
    return len(chosen), total


def write_big(path: Path, size: int) -> None:
    block = 16 * MIB
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(block, left)
            f.write(os.urandom(n))
            left -= n


# -- measured processes -----------------------------------------------------------


def run_child(args: Sequence[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a process to its end: wall s, CPU s and ru_maxrss (wait4), sampled peak RSS."""
    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
        start = time.perf_counter()
        proc = subprocess.Popen(args, stdout=out_file, stderr=err_file, env=env)
        peak = [0]
        done = threading.Event()
        sampler = threading.Thread(target=_sample_rss, args=(proc.pid, peak, done), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        sampler.join()
        out_file.seek(0)
        err_file.seek(0)
        out = out_file.read().decode(errors="replace")
        err = err_file.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(
            f"{Path(args[0]).name} {' '.join(args[1:4])} failed ({proc.returncode}): "
            f"{err.strip()[-3000:]}"
        )
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "maxrss_kib": usage.ru_maxrss,
        "sampled_rss_kib": peak[0] // KIB,
        "stdout": out,
    }


def peak_kib(run: dict[str, Any]) -> int:
    """A process's peak RSS: the kernel's VmHWM, as the agent reports it at its end or as
    sampled. Not ru_maxrss: Linux folds the spawning process's high-water mark into it at
    exec, so it shows at least the benchmark's own RSS (about 100 MiB here)."""
    return int(max(run.get("hwm_kib", 0), run["sampled_rss_kib"]))


def _sample_rss(pid: int, peak: list[int], done: threading.Event) -> None:
    """The process's peak RSS in bytes as the kernel keeps it (VmHWM of its current
    program), read every 20 ms until it ends."""
    path = f"/proc/{pid}/status"
    while not done.is_set():
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(("VmHWM:", "VmRSS:")):
                        peak[0] = max(peak[0], int(line.split()[1]) * KIB)
        except (OSError, ValueError, IndexError):
            return
        done.wait(0.02)


def server_cpu(server: benchlib.Server) -> float:
    assert server.proc is not None
    total = 0.0
    try:
        main = psutil.Process(server.proc.pid)
        for p in [main, *main.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
    except psutil.Error:
        pass
    return total


# -- the two sides ------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.server: benchlib.Server | None = None
        self.sites = 0
        self.profiles = 0
        self.priority: list[str] = []
        if args.restic_priority == "same":  # the agent's pass: nice 10, IO best-effort 7
            self.priority = ["nice", "-n", "10", "ionice", "-c", "2", "-n", "7"]

    # the server
    def start_server(self) -> None:
        data = self.work / "server"
        saved = self.work / "bench.json"
        if self.args.reuse and saved.exists():
            kept = json.loads(saved.read_text())
            self.server = benchlib.Server(
                data, kept["admin_token"], Path(kept["ca_path"]), tls=True
            )
            self.sites = kept.get("sites", 0)
        else:
            data.mkdir()
            self.server = benchlib.init_server(data, tls=True)
        self.server.start()
        self.save()

    def save(self, **extra: Any) -> None:
        """With --reuse: what a later run needs to reuse the server, sites and folders."""
        if not self.args.reuse:
            return
        assert self.server is not None
        path = self.work / "bench.json"
        kept = json.loads(path.read_text()) if path.exists() else {}
        kept.update(
            admin_token=self.server.admin_token,
            ca_path=str(self.server.ca_path),
            sites=self.sites,
            **extra,
        )
        path.write_text(json.dumps(kept, indent=1))

    def kept(self, name: str) -> Any:
        """What an earlier --reuse run saved under `name`, or None."""
        path = self.work / "bench.json"
        if not self.args.reuse or not path.exists():
            return None
        return json.loads(path.read_text()).get(name)

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()

    def enroll(self, site: str) -> Path:
        """A new agent state dir enrolled for `site` (a new site: a new data key)."""
        from storesafe.v1 import admin_pb2, admin_pb2_grpc

        assert self.server is not None
        state = self.work / "agents" / site
        state.mkdir(parents=True)
        with benchlib.channel(self.server.address, self.server.credentials()) as ch:
            token = (
                admin_pb2_grpc.AdminServiceStub(ch)
                .CreateEnrollmentToken(
                    admin_pb2.CreateEnrollmentTokenRequest(site=site, group="default"),
                    metadata=self.server.admin_metadata,
                    timeout=30,
                )
                .token
            )
        args = [str(benchlib.BIN / "storesafe-agent"), "enroll", "--server"]
        args += [self.server.address, "--token", token, "--site", site]
        args += ["--state-dir", str(state), "--ca", str(self.server.ca_path)]
        done = subprocess.run(args, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"enroll {site} failed: {done.stderr.strip()}")
        return state

    def new_site(self, name: str) -> tuple[str, Path]:
        self.sites += 1
        site = f"{name}-{self.sites}"
        return site, self.enroll(site)

    def agent_pass(
        self, site: str, state: Path, folder: Path, src: Path | None = None
    ) -> dict[str, Any]:
        assert self.server is not None
        settle_disk()
        before = server_cpu(self.server)
        args = [sys.executable, str(PASS_SCRIPT), "--state", str(state)]
        args += ["--site", site, "--folder", str(folder), "--recovery-key", self.recovery_key()]
        args += ["--server", self.server.address]
        if src is not None:
            args += ["--src", str(src)]
        if self.args.profile:
            args = [*py_spy(f"{self.profile_prefix(site)}-agent.txt"), "--", *args]
        with self.spy_on_server(site):
            out = run_child(args)
        out["server_cpu_s"] = server_cpu(self.server) - before
        out.update(_json_line(out.pop("stdout")))
        if out["outcome"] != "succeeded":
            raise SystemExit(f"the agent pass failed: {out}")
        return out

    def profile_prefix(self, name: str) -> Path:
        self.profiles += 1
        return benchlib.RESULTS / f"profile-image-sync-{self.profiles}-{name}"

    @contextlib.contextmanager
    def spy_on_server(self, name: str, pid: int | None = None) -> Iterator[None]:
        """With --profile: py-spy records the server (or process `pid`) meanwhile; with
        --perf: `perf record -g` does (its threads, not its children)."""
        if not (self.args.profile or self.args.perf):
            yield
            return
        assert self.server is not None and self.server.proc is not None
        pid = pid or self.server.proc.pid
        if self.args.perf:
            out = f"{self.profile_prefix(name)}-server.perf"
            cmd = ["perf", "record", "-F", "499", "-g", "-o", out, "-p", str(pid)]
        else:
            cmd = [*py_spy(f"{self.profile_prefix(name)}-server.txt"), "--pid", str(pid)]
        benchlib.RESULTS.mkdir(parents=True, exist_ok=True)
        spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # attached before the measured work starts
        try:
            yield
        finally:
            spy.send_signal(signal.SIGINT)
            spy.wait()

    def recovery_key(self) -> str:
        path = self.work / "fleet.pub"
        if not path.exists():
            from common.vault import FleetPrivateKey

            path.write_text(FleetPrivateKey.generate().public.text)
        return path.read_text().strip()

    def restic_env(self, repo: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            RESTIC_REPOSITORY=str(repo),
            RESTIC_PASSWORD=PASSWORD,
            RESTIC_CACHE_DIR=str(self.work / "restic-cache"),
        )
        return env

    def restic_init(self, repo: Path) -> None:
        subprocess.run(
            ["restic", "init", "--quiet"],
            env=self.restic_env(repo),
            check=True,
            capture_output=True,
        )

    def restic_pass(self, repo: Path, folder: Path) -> dict[str, Any]:
        settle_disk()
        out = run_child(
            [*self.priority, "restic", "backup", "--quiet", str(folder)], self.restic_env(repo)
        )
        out.pop("stdout")
        return out


# -- phases ----------------------------------------------------------------------


def _json_line(text: str) -> dict[str, Any]:
    """The child's JSON line (py-spy, when it wraps the child, prints lines of its own)."""
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            parsed: dict[str, Any] = json.loads(line)
            return parsed
    raise SystemExit(f"no figures from the agent pass: {text[-2000:]}")


def settle_disk() -> None:
    """Write back what earlier steps left dirty (GBs after a first sync), so that neither
    side's fsyncs wait behind the other's data (not timed)."""
    os.sync()


def py_spy(out: str) -> list[str]:
    benchlib.RESULTS.mkdir(parents=True, exist_ok=True)
    return [
        str(benchlib.BIN / "py-spy"),
        "record",
        "--format",
        "raw",
        "--rate",
        "200",
        "--subprocesses",
        "--threads",
        "-o",
        out,
    ]


def ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs else float("nan")


def side_rows(label: str, ours: dict[str, Any], restic: dict[str, Any]) -> list[list[Any]]:
    return [
        [
            f"{label}: agent",
            ours["wall_s"],
            ours["cpu_s"],
            ours["server_cpu_s"],
            peak_kib(ours) / KIB,
            f"{ratio(ours['wall_s'], restic['wall_s']):.2f}",
        ],
        [
            f"{label}: restic",
            restic["wall_s"],
            restic["cpu_s"],
            "-",
            peak_kib(restic) / KIB,
            "1.00",
        ],
    ]


HEAD = ["", "wall s", "CPU s", "server CPU s", "peak RSS MiB", "x restic"]


def phase_first_and_changed(b: Bench, report: dict[str, Any], run_changed: bool) -> None:
    a = b.args
    folder = b.work / "Images"
    sizes = scan_sizes(a.files, a.min_kib, a.max_kib, a.large, seed=13)
    t = time.perf_counter()
    total = write_folder(folder, sizes, a.per_dir)
    print(
        f"built {a.files:,} files, {total / 1e9:.2f} GB (median "
        f"{statistics.median(sizes) / KIB:.0f} KiB) in {time.perf_counter() - t:.1f} s",
        flush=True,
    )
    site, state = b.new_site("first")
    repo = b.work / "restic-first"
    b.restic_init(repo)
    ours = b.agent_pass(site, state, folder)
    theirs = b.restic_pass(repo, folder)
    assert ours["files_copied"] == a.files, ours
    rows = side_rows("first sync", ours, theirs)
    report["first"] = {
        "files": a.files,
        "bytes": total,
        "agent": ours,
        "restic": theirs,
        "ratio": ratio(ours["wall_s"], theirs["wall_s"]),
        "load_1m": os.getloadavg()[0],
    }
    print(f"\nfirst sync, {a.files:,} files, {total / 1e9:.2f} GB (goal at most 1.0x):")
    print(benchlib.table(HEAD, rows), flush=True)
    if not run_changed:
        return
    changed, changed_bytes = rewrite_some(folder, a.change_pct, seed=17)
    time.sleep(0.05)
    theirs = b.restic_pass(repo, folder)  # restic first this time
    ours = b.agent_pass(site, state, folder)
    assert ours["files_changed"] == changed, ours
    report["changed"] = {
        "files": changed,
        "bytes": changed_bytes,
        "agent": ours,
        "restic": theirs,
        "ratio": ratio(ours["wall_s"], theirs["wall_s"]),
        "load_1m": os.getloadavg()[0],
    }
    print(
        f"\nre-sync after {changed:,} of {a.files:,} files changed "
        f"({changed_bytes / 1e6:.0f} MB; goal at most 1.0x):"
    )
    print(benchlib.table(HEAD, side_rows("1% changed", ours, theirs)), flush=True)


def phase_nochange(b: Bench, report: dict[str, Any]) -> None:
    a = b.args
    key = f"nochange-{a.resync_files}"
    folder = b.work / f"Many-{a.resync_files}"
    rng = random.Random(29)
    sizes = [rng.randint(1 * KIB, 8 * KIB) for _ in range(a.resync_files)]
    total = sum(sizes)
    kept = b.kept(key)
    if kept is not None:  # --reuse: the folder, site and repository of an earlier run
        site, state, repo = kept["site"], Path(kept["state"]), Path(kept["repo"])
        first_ours, first_theirs = kept["first_agent"], kept["first_restic"]
        print(f"\nreusing {a.resync_files:,} files and their first syncs in {b.work}", flush=True)
    else:
        t = time.perf_counter()
        write_folder(folder, sizes, 1000)
        print(
            f"\nbuilt {a.resync_files:,} files, {total / 1e6:.0f} MB in "
            f"{time.perf_counter() - t:.1f} s",
            flush=True,
        )
        site, state = b.new_site("many")
        repo = b.work / f"restic-many-{a.resync_files}"
        b.restic_init(repo)
        first_ours = b.agent_pass(site, state, folder)
        first_theirs = b.restic_pass(repo, folder)
        b.save(
            **{
                key: {
                    "site": site,
                    "state": str(state),
                    "repo": str(repo),
                    "first_agent": first_ours,
                    "first_restic": first_theirs,
                }
            }
        )
    ours, theirs, base = [], [], []
    base_state = state.with_name(f"{state.name}-baseline")
    if a.baseline is not None:
        # The baseline keeps its own index (a copy: same site, same data key), so neither
        # side's index meta (the last snapshot's digest) is the other's; its first pass
        # may commit a snapshot (another digest format) and is not measured.
        if not base_state.exists():
            shutil.copytree(state, base_state)
        b.agent_pass(site, base_state, folder, a.baseline)
    if kept is not None:  # the last run may have been of other code: one pass to settle
        b.agent_pass(site, state, folder)
    for i in range(a.repeat):  # interleaved, the order alternating
        if a.baseline is not None:
            base.append(b.agent_pass(site, base_state, folder, a.baseline))
        if i % 2:
            theirs.append(b.restic_pass(repo, folder))
            ours.append(b.agent_pass(site, state, folder))
        else:
            ours.append(b.agent_pass(site, state, folder))
            theirs.append(b.restic_pass(repo, folder))
        for run in (ours[-1], *base[-1:]):  # nothing read, nothing committed
            assert run["bytes_read"] == 0 and run["files_copied"] == 0, run
            assert not run["snapshot_id"], run
    med_ours = _median_run(ours)
    med_theirs = _median_run(theirs)
    report["nochange"] = {
        "files": a.resync_files,
        "bytes": total,
        "first": {"agent": first_ours, "restic": first_theirs},
        "agent": ours,
        "restic": theirs,
        "ratio": ratio(med_ours["wall_s"], med_theirs["wall_s"]),
        "load_1m": os.getloadavg()[0],
    }
    print(f"\n{a.resync_files:,} small files ({total / 1e6:.0f} MB):")
    rows = side_rows("first sync", first_ours, first_theirs)
    rows += side_rows(f"no change, median of {a.repeat}", med_ours, med_theirs)
    if base:
        med_base = _median_run(base)
        report["nochange"]["baseline"] = base
        report["nochange"]["baseline_ratio"] = ratio(med_base["wall_s"], med_theirs["wall_s"])
        rows.insert(
            -1, side_rows(f"no change, median of {a.repeat}: baseline", med_base, med_theirs)[0]
        )
    print(benchlib.table(HEAD, rows))
    print("goal for the no-change re-sync: at most 0.5x", flush=True)


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]


def phase_big(b: Bench, report: dict[str, Any]) -> None:
    a = b.args
    folder = b.work / "Big"
    folder.mkdir()
    size = int(a.big_gb * 1e9)
    t = time.perf_counter()
    write_big(folder / "archive.tif", size)
    print(f"\nwrote one {size / 1e9:.2f} GB file in {time.perf_counter() - t:.1f} s", flush=True)
    site, state = b.new_site("big")
    ours = b.agent_pass(site, state, folder)
    report["big"] = {"bytes": size, "agent": ours, "load_1m": os.getloadavg()[0]}
    rss = peak_kib(ours) / KIB
    print(
        f"one {size / 1e9:.2f} GB file: agent pass {ours['wall_s']:.1f} s, CPU "
        f"{ours['cpu_s']:.1f} s, server CPU {ours['server_cpu_s']:.1f} s, peak RSS {rss:.0f} MiB",
        flush=True,
    )
    shutil.rmtree(folder)


INGEST_MODES = ("backend", "ingest", "create_many", "create", "transport")
"""The ingest phase's rows in the order of rounds 1, 3, 5, ...; rounds 2, 4, ... reverse it."""
FLOORS = ("create_many", "create", "transport")
"""The modes sent to the bare gRPC server (bench/ingest_floor.py) instead of the real one."""
INGEST_LABELS = {
    "ingest": "{agents} agents -> storesafe-server",
    "create_many": "{agents} agents -> bare gRPC: store floor, create_many",
    "create": "{agents} agents -> bare gRPC: store floor, create",
    "transport": "{agents} agents -> bare gRPC: transport floor",
    "backend": "Backend.create, {agents} threads",
}


def phase_ingest(b: Bench, report: dict[str, Any]) -> None:
    a = b.args
    assert b.server is not None
    floors = {mode: start_floor(b, mode) for mode in FLOORS}
    runs: list[dict[str, Any]] = []
    try:
        for round_ in range(a.ingest_rounds):
            order = INGEST_MODES if round_ % 2 == 0 else INGEST_MODES[::-1]
            runs += ingest_round(b, round_, order, floors)
            for r in runs[-len(order) :]:
                print(
                    f"  ingest round {round_ + 1} {r['mode']:<11} {r['mib_per_s']:>7.1f} MiB/s, "
                    f"client CPU {r['client_cpu_s']:.2f} s, server CPU "
                    f"{_or_dash(r['server_cpu_s'])} s",
                    flush=True,
                )
    finally:
        for _, proc in floors.values():
            stop_floor(proc)
    med = {mode: _medians([r for r in runs if r["mode"] == mode]) for mode in INGEST_MODES}
    backend, ingest = med["backend"]["mib_per_s"], med["ingest"]["mib_per_s"]
    rows = []
    for mode in ("ingest", "create_many", "create", "transport", "backend"):
        m = med[mode]
        srv = m["server_cpu_s"]
        rows.append(
            [
                INGEST_LABELS[mode].format(agents=a.agents),
                m["mib_per_s"],
                m["seconds"],
                m["client_cpu_s"],
                _or_dash(srv),
                "-" if srv is None else f"{srv * 1000 / (m['bytes'] / MIB):.2f}",
                f"{m['mib_per_s'] / backend:.2f}",
                f"{ingest / m['mib_per_s']:.2f}",
            ]
        )
    blobs, size = med["ingest"]["blobs"], med["ingest"]["bytes"]
    print(
        f"\nserver ingest, {blobs:,} blobs, {size / MIB:.0f} MiB a round, medians of "
        f"{a.ingest_rounds} rounds per column (goal: ingest at least 0.5x backend):"
    )
    head = ["", "MiB/s", "seconds", "client CPU s", "server CPU s", "server ms/MiB"]
    print(benchlib.table([*head, "x backend", "ingest x this"], rows), flush=True)
    report["ingest"] = {
        "agents": a.agents,
        "mib_per_agent": a.ingest_mib,
        "runs": runs,
        "medians": med,
        "ratio": ingest / backend,
        "floor_ratios": {f"{mode}_x_backend": med[mode]["mib_per_s"] / backend for mode in FLOORS}
        | {f"ingest_x_{mode}": ingest / med[mode]["mib_per_s"] for mode in FLOORS},
        "load_1m": os.getloadavg()[0],
    }


def _or_dash(value: float | None) -> str | float:
    return "-" if value is None else round(value, 2)


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the rounds (MiB/s, seconds and CPU apart)."""
    out: dict[str, Any] = {"blobs": runs[0]["blobs"], "bytes": runs[0]["bytes"]}
    for key in ("mib_per_s", "seconds", "client_cpu_s", "server_cpu_s"):
        values = [r[key] for r in runs if r[key] is not None]
        out[key] = statistics.median(values) if values else None
    return out


def start_floor(b: Bench, mode: str) -> tuple[str, subprocess.Popen[bytes]]:
    """A bare gRPC server (bench/ingest_floor.py) with the real server's certificate."""
    assert b.server is not None
    address = f"127.0.0.1:{benchlib.free_port()}"
    args = [sys.executable, str(FLOOR_SCRIPT), "--mode", mode, "--listen", address]
    args += ["--tls-dir", str(b.server.data_dir)]
    args += ["--store", str(b.server.data_dir / "store"), "--prefix", f"bench-floor-{mode}"]
    log = (b.work / f"floor-{mode}.log").open("ab")
    proc = subprocess.Popen(args, stdout=log, stderr=log)
    benchlib.wait_ready(address, proc, b.server.credentials(), 60)
    return address, proc


def stop_floor(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def process_cpu(proc: subprocess.Popen[bytes]) -> float:
    t = psutil.Process(proc.pid).cpu_times()
    return float(t.user + t.system)


def ingest_round(
    b: Bench,
    round_: int,
    order: Sequence[str],
    floors: dict[str, tuple[str, subprocess.Popen[bytes]]],
) -> list[dict[str, Any]]:
    """One round: the agents seal their chunks once, then send them to each target in
    `order` (the real server, the two floors), all agents at one signal; the backend
    reference writes the same blob sizes in its slot of the order."""
    a = b.args
    assert b.server is not None
    with ThreadPoolExecutor(max_workers=4) as pool:
        enrolled = list(pool.map(lambda i: b.enroll(f"ingest-{round_}-{i}"), range(a.agents)))
    procs = []
    for i, state in enumerate(enrolled):
        args = [sys.executable, __file__, "--child", "ingest", "--state", str(state)]
        args += ["--site", f"ingest-{round_}-{i}", "--recovery-key", b.recovery_key()]
        args += ["--mib", str(a.ingest_mib), "--seed", str(round_ * 1000 + i)]
        args += ["--min-kib", str(a.min_kib), "--max-kib", str(a.max_kib)]
        for mode in FLOORS:
            args += ["--floor", f"{mode}={floors[mode][0]}"]
        procs.append(
            subprocess.Popen(
                args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        )
    try:
        sizes: list[int] = []
        for p in procs:  # each has sealed its chunks, registered its key, opened its links
            ready = _child_line(p)
            sizes += ready["blob_sizes"]
        runs = []
        for mode in order:
            settle_disk()
            if mode == "backend":
                run = backend_round(b, sizes, round_)
            else:
                target = b.server.proc if mode == "ingest" else floors[mode][1]
                assert target is not None
                run = send_round(b, procs, mode, target)
                assert run["blobs"] == len(sizes) and run["bytes"] == sum(sizes), run
            runs.append({"mode": mode, "round": round_ + 1, **run})
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(b"end\n")
            p.stdin.flush()
            if p.wait() != 0:
                raise SystemExit(f"an ingest agent failed: {_stderr(p)}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return runs


def send_round(
    b: Bench, procs: list[subprocess.Popen[bytes]], mode: str, target: subprocess.Popen[bytes]
) -> dict[str, Any]:
    """Every agent sends its sealed chunks to `mode`'s server at one signal."""
    assert b.server is not None
    server = b.server

    def cpu_of() -> float:
        return server_cpu(server) if mode == "ingest" else process_cpu(target)

    with b.spy_on_server(mode, target.pid):
        srv_before = cpu_of()
        started = time.perf_counter()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(f"go {mode}\n".encode())
            p.stdin.flush()
        results = [_child_line(p) for p in procs]
        wall = time.perf_counter() - started
        srv = cpu_of() - srv_before
    total = sum(r["bytes"] for r in results)
    sent = sum(r["bytes_sent"] for r in results)
    assert sent == total, (mode, sent, total)
    return {
        "blobs": sum(r["chunks_sent"] for r in results),
        "bytes": total,
        "seconds": wall,
        "mib_per_s": total / wall / MIB,
        "client_cpu_s": sum(r["send_cpu_s"] for r in results),
        "server_cpu_s": srv,
    }


def _child_line(p: subprocess.Popen[bytes]) -> dict[str, Any]:
    assert p.stdout is not None
    line = p.stdout.readline().decode()
    if not line.startswith("{"):
        p.kill()
        p.wait()
        raise SystemExit(f"an ingest agent failed: {line}{_stderr(p)}")
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def _stderr(p: subprocess.Popen[bytes]) -> str:
    assert p.stderr is not None
    return p.stderr.read().decode(errors="replace")[-3000:]


def backend_round(b: Bench, sizes: list[int], round_: int) -> dict[str, Any]:
    """The same number and sizes of blobs straight into the server's filesystem backend."""
    import hashlib

    from server.storage.filesystem import FilesystemBackend

    assert b.server is not None
    backend = FilesystemBackend(b.server.data_dir / "store")
    backend.check()
    pool_bytes = os.urandom(max(sizes) + len(sizes))
    names = []
    for i in range(len(sizes)):
        h = hashlib.sha256(b"%d-%d" % (round_, i)).hexdigest()
        names.append(f"bench-reference/r{round_}/chunks/{h[:2]}/{h}")

    def one(i: int) -> None:
        if not backend.create(names[i], pool_bytes[i : i + sizes[i]]):
            raise RuntimeError(f"{names[i]} existed already")

    cpu = time.process_time()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=b.args.agents) as pool:
        list(pool.map(one, range(len(sizes))))
    wall = time.perf_counter() - started
    total = sum(sizes)
    return {
        "blobs": len(sizes),
        "bytes": total,
        "seconds": wall,
        "mib_per_s": total / wall / MIB,
        "client_cpu_s": time.process_time() - cpu,
        "server_cpu_s": None,
    }


# -- children: the agent side ------------------------------------------------------


def child_ingest(args: argparse.Namespace) -> None:
    """Seal image-like chunks in memory, open a link to each target, print the blob sizes;
    then for each "go MODE" line send them all to that target and print the figures, until
    "end"."""
    from agent.datakey import DataKeyFile
    from agent.offsite.bandwidth import TokenBucket
    from agent.offsite.uploader import LoopStore, Uploader
    from agent.settings import StateDir
    from agent.transport.link import ServerLink
    from agent.transport.store import StoreCalls
    from common.clock import SystemClock
    from common.vault import IMAGES, FleetPublicKey, cut_stream

    state = StateDir(args.state)
    creds = state.load_credentials()
    key_file = DataKeyFile(state.root, args.site)
    keys = key_file.keys()
    rng = random.Random(args.seed)
    lo, hi = math.log(args.min_kib * KIB), math.log(args.max_kib * KIB)
    sealed = []
    total = 0
    while total < args.mib * MIB:
        size = int(math.exp(lo + rng.random() ** 2 * (hi - lo)))
        for chunk in cut_stream(keys, io.BytesIO(os.urandom(size)), IMAGES):
            sealed.append(chunk.seal(keys))
            total += len(sealed[-1].blob)

    async def main() -> None:
        links = {"ingest": StoreCalls(ServerLink.for_agent(state, creds))}
        for spec in args.floor:  # the bare servers: the same TLS, CA and credential
            mode, _, address = spec.partition("=")
            links[mode] = StoreCalls(
                ServerLink(address, ca_pem=state.read_ca(creds), credential=creds.credential)
            )
        try:
            registration = key_file.registration(FleetPublicKey.parse(args.recovery_key))
            if registration is not None:
                await links["ingest"].put_site_key(registration)
            for link in links.values():  # every connection open (TLS handshake done) first
                await link.missing_chunks([sealed[0].chunk_id])
            loop = asyncio.get_running_loop()
            print(json.dumps({"blob_sizes": [len(c.blob) for c in sealed]}), flush=True)
            while (line := (await loop.run_in_executor(None, sys.stdin.readline)).split()) and (
                line[0] == "go"
            ):
                figures = await send_all(links[line[1]], loop)
                print(json.dumps(figures), flush=True)
        finally:
            for link in links.values():
                await link.close()

    async def send_all(link: StoreCalls, loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
        uploader = Uploader(
            keys,
            LoopStore(link, loop),
            TokenBucket.kbps(0, clock=SystemClock(), sleep=time.sleep),
            batch_bytes=INGEST_BATCH,
        )
        cpu, began = time.process_time(), time.perf_counter()
        await asyncio.to_thread(uploader.send_sealed, sealed)
        return {
            "send_s": time.perf_counter() - began,
            "send_cpu_s": time.process_time() - cpu,
            "bytes": total,
            "bytes_sent": uploader.tally.bytes_sent,
            "chunks_sent": uploader.tally.chunks_sent,
        }

    asyncio.run(main())


# -- main -------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", default=",".join(PHASES), help="phases, comma-separated")
    ap.add_argument("--files", type=int, default=20_000, help="first sync: files")
    ap.add_argument("--min-kib", type=int, default=20, help="smallest image file")
    ap.add_argument("--max-kib", type=int, default=2048, help="largest ordinary image file")
    ap.add_argument("--large", type=int, default=10, help="files of 8-32 MiB among --files")
    ap.add_argument("--per-dir", type=int, default=500, help="files a folder")
    ap.add_argument("--change-pct", type=float, default=1.0, help="changed: share rewritten")
    ap.add_argument("--resync-files", type=int, default=100_000, help="no-change: files")
    ap.add_argument("--repeat", type=int, default=3, help="no-change re-syncs of each side")
    ap.add_argument("--big-gb", type=float, default=2.0, help="big: the one file's size")
    ap.add_argument("--agents", type=int, default=10, help="ingest: agents at once")
    ap.add_argument("--ingest-mib", type=int, default=32, help="ingest: MiB each agent sends")
    ap.add_argument("--ingest-rounds", type=int, default=3, help="ingest: rounds")
    ap.add_argument(
        "--restic-priority",
        choices=("same", "normal"),
        default="same",
        help="restic at the agent pass's priority (nice 10, IO best-effort 7) or normal",
    )
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="where the work dir goes")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="nochange only: keep the server, the folder, the agent's site and restic's "
        "repository in DIR/storesafe-image-sync-reuse and reuse them (with their first "
        "syncs' figures) in later --reuse runs of the same --resync-files",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="py-spy profiles of each agent pass and of the server meanwhile, into "
        "bench/results/profile-image-sync-*.txt (diagnosis only: py-spy's CPU is counted)",
    )
    ap.add_argument(
        "--perf",
        action="store_true",
        help="ingest: `perf record -g` (499 Hz) of each server while the agents send, into "
        "bench/results/profile-image-sync-*-server.perf (diagnosis only)",
    )
    ap.add_argument(
        "--baseline",
        type=Path,
        help="nochange: also run each no-change pass with the agent code of this source tree "
        "(e.g. `git archive main | tar -x -C DIR`) on a copy of the agent's state dir, "
        "interleaved: before and after in one run",
    )
    ap.add_argument("--quick", action="store_true", help="a smoke run of every phase")
    ap.add_argument("--child", choices=("ingest",), help=argparse.SUPPRESS)
    ap.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--site", help=argparse.SUPPRESS)
    ap.add_argument("--recovery-key", help=argparse.SUPPRESS)
    ap.add_argument("--mib", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--floor", action="append", default=[], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "ingest":
        child_ingest(args)
        return
    if args.quick:
        args.files, args.large, args.resync_files, args.repeat = 1000, 2, 5000, 2
        args.big_gb, args.ingest_mib, args.ingest_rounds = 0.2, 4, 1
    phases = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown:
        ap.error(f"unknown phases {sorted(unknown)}; choose from {', '.join(PHASES)}")
    for name in ("files", "resync_files", "repeat", "agents", "ingest_mib", "ingest_rounds"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.min_kib <= args.max_kib:
        ap.error("--min-kib must be positive and at most --max-kib")
    if args.reuse and set(phases) != {"nochange"}:
        ap.error("--reuse goes with --only nochange")
    if "big" in phases and args.big_gb <= 0:
        ap.error("--big-gb must be positive")
    if shutil.which("restic") is None and {"first", "changed", "nochange"} & set(phases):
        raise SystemExit("restic is not installed: apt-get install -y restic (Debian's package)")
    if args.restic_priority == "same" and not (shutil.which("nice") and shutil.which("ionice")):
        raise SystemExit("nice and ionice are needed for --restic-priority same")

    load_before = os.getloadavg()[0]
    print(f"1-minute load average at start: {load_before:.2f}{_loaded(load_before)}", flush=True)
    if args.reuse:
        work = args.dir / "storesafe-image-sync-reuse"
        work.mkdir(exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="storesafe-image-sync-", dir=args.dir))
    bench = Bench(args, work)
    report: dict[str, Any] = {
        "machine": benchlib.machine(),
        "args": vars(args) | {"dir": str(args.dir)},
    }
    report["args"].pop("child", None)
    try:
        bench.start_server()
        if "first" in phases or "changed" in phases:
            phase_first_and_changed(bench, report, "changed" in phases)
        if "nochange" in phases:
            phase_nochange(bench, report)
        if "big" in phases:
            phase_big(bench, report)
        if "ingest" in phases:
            phase_ingest(bench, report)
    finally:
        bench.stop_server()
        if args.keep or args.reuse:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    summary(report)
    load_after = os.getloadavg()[0]
    report["load"] = [load_before, load_after]
    print(f"1-minute load average at the end: {load_after:.2f}{_loaded(load_after)}")
    name = "image_sync-quick.json" if args.quick else "image_sync.json"
    print(f"JSON: {benchlib.write_json(name, report)}")


def _loaded(load: float) -> str:
    return (
        "  (WARNING: the box is loaded; wall times are inflated, compare CPU)" if load > 1.5 else ""
    )


def summary(report: dict[str, Any]) -> None:
    rows = []
    goals = {"first": ("<=", 1.0), "changed": ("<=", 1.0), "nochange": ("<=", 0.5)}
    for phase, (_, goal) in goals.items():
        if phase in report:
            r = report[phase]["ratio"]
            rows.append([f"{phase} (x restic wall)", f"{r:.2f}", f"<= {goal}", _met(r <= goal)])
    rss = [peak_kib(p) / KIB for p in _agent_passes(report)]
    if rss:
        peak = max(rss)
        rows.append(
            [
                "agent peak RSS MiB",
                f"{peak:.0f}",
                f"< {RSS_GOAL_MB} MB",
                _met(peak * 1.048576 < RSS_GOAL_MB),
            ]
        )
    if "ingest" in report:
        r = report["ingest"]["ratio"]
        rows.append(["ingest (x backend)", f"{r:.2f}", ">= 0.5", _met(r >= 0.5)])
        floor = report["ingest"]["floor_ratios"]
        for mode in FLOORS:
            name = INGEST_LABELS[mode].partition("bare gRPC: ")[2]
            ratio_ = floor[f"{mode}_x_backend"]
            rows.append([f"bare gRPC {name} (x backend)", f"{ratio_:.2f}", "-", ""])
    if rows:
        print("\nsummary:")
        print(benchlib.table(["", "figure", "goal", ""], rows))
    report["summary"] = rows


def _agent_passes(report: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for phase in ("first", "changed", "big"):
        if phase in report:
            yield report[phase]["agent"]
    if "nochange" in report:
        yield report["nochange"]["first"]["agent"]
        yield from report["nochange"]["agent"]


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


if __name__ == "__main__":
    main()
