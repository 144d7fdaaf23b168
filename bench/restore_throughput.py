"""Benchmark: `storesafe restore` of a database backup from the off-site store vs `cp` of it.

    .venv/bin/python bench/restore_throughput.py                 # a backup of >= 200 MB
    .venv/bin/python bench/restore_throughput.py --filler-mb 400 # a bigger one
    .venv/bin/python bench/restore_throughput.py --quick         # ~20 MB, a smoke run
    .venv/bin/python bench/restore_throughput.py --profile       # + cProfile of one restore
    .venv/bin/python bench/restore_throughput.py --chunk-kib 16  # backups cut at 16 KiB average
    .venv/bin/python bench/restore_throughput.py --reuse --baseline DIR  # + the CLI of DIR

Builds a shop database (tests/support/shopsim.py) with --filler-mb MB of item
rows and takes a gbak backup of it (cached in /var/tmp/storesafe-restore-bench),
seals that gbak stream as a database snapshot exactly as the agent does
(common.vault + backupset, BACKUPS chunking), uploads it to a real
`storesafe-server` (TLS, loopback, filesystem store) with the agent RPCs, and
then times, each --repeat times on the same machine:

- `cp`: a plain copy of the same bytes (the raw .fbk) to a new file, fsynced;
- `restore`: the real command, `storesafe restore SITE --to PATH --key FILE
  --json` in its own process: fetch over gRPC, open and check every chunk,
  reassemble, sha256 and size checks, fsync;
- `restic restore` of the same .fbk from a local restic repository (restic
  encrypts and deduplicates too; its chunks average 1 MiB), fsynced: how far an
  encrypted, deduplicating store gets against a plain copy on this machine;
- the floor (bench/restore_floor.py), in this process: every chunk of the same
  backup read from the store's files, its header checked, decrypted and
  authenticated, decompressed, its keyed id recomputed; the whole stream's sha256
  checked; written and fsynced. No network, no Python per chunk beyond the library
  calls: the work a restore cannot skip, on 1 thread and on 2 (a pool opens groups
  of chunks while the main thread hashes and writes), and once more with the
  vault's own `open_chunk` (what its Python costs);
- `storesafe --help`: the CLI's start-up alone (5 runs).

`--baseline DIR` times the restore and `--help` with the CLI code of another source
tree too (`git archive main | tar -x -C DIR`), interleaved with this tree's: before
and after in one run (the server is this tree's either way).

All write to the same folder; the source is warm in the page cache. The figure
is the ratio of throughputs (restore MB/s over cp MB/s), goal at least 0.5;
CPU seconds are the process's (restore: the CLI and the server apart), which a
loaded machine inflates less than wall time. --chunk-kib seals the backup with
another average chunk size (the agent's is 4 KiB; min half, max 8x the average).
Linux, as root, with the Firebird server from scripts/setup-firebird.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import hashlib
import io
import json
import os
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import restore_floor  # noqa: E402
from benchlib import machine, table, write_json  # noqa: E402
from storesafe.v1 import agent_pb2, agent_pb2_grpc  # noqa: E402
from vault_throughput import gbak, password  # noqa: E402

from common.firebird.connection import FirebirdTarget  # noqa: E402
from common.vault.backupset import BackupInfo, StreamInfo, stream_entries  # noqa: E402
from common.vault.chunking import BACKUPS, KIB, Profile  # noqa: E402
from common.vault.chunks import seal_stream  # noqa: E402
from common.vault.keyfile import write_key_file  # noqa: E402
from common.vault.keys import FleetPrivateKey  # noqa: E402
from common.vault.sitekeys import SiteKeys  # noqa: E402
from common.vault.snapshot import seal_snapshot  # noqa: E402
from tests.support.sealed import new_site  # noqa: E402
from tests.support.server import ServerHandle, enroll_agent, start_server  # noqa: E402

CACHE = Path("/var/tmp/storesafe-restore-bench")
BIN = Path(sys.executable).parent


def make_backup(filler_mb: int, pw: str) -> Path:
    """The raw gbak backup of a shop database with `filler_mb` MB of rows (cached)."""
    from tests.support.shopsim import create_shop

    CACHE.mkdir(parents=True, exist_ok=True)
    shutil.chown(CACHE, "firebird", "firebird")
    fbk = CACHE / f"shop-{filler_mb}mb.fbk"
    if fbk.exists():
        return fbk
    database = CACHE / f"shop-{filler_mb}mb.fdb"
    database.unlink(missing_ok=True)
    print(f"building a shop database with {filler_mb} MB of item rows ...", flush=True)
    create_shop(
        FirebirdTarget("localhost", str(database), "SYSDBA", pw), accounts=1000, filler_mb=filler_mb
    )
    gbak(database, fbk, pw)
    database.unlink(missing_ok=True)
    return fbk


def chunking(kib: int) -> Profile:
    """The agent's profile for database backups, or one like it at `kib` KiB average."""
    if kib * KIB == BACKUPS.avg_size:
        return BACKUPS
    return Profile(
        f"backups-{kib}k", min_size=kib * KIB // 2, avg_size=kib * KIB, max_size=8 * kib * KIB
    )


def upload(
    server: ServerHandle,
    name: str,
    fbk: Path,
    fleet: FleetPrivateKey,
    profile: Profile,
    floor_file: Path,
) -> dict[str, float]:
    """Seal the backup as a database snapshot and upload it with the agent RPCs; what the
    floor needs (the site's data key, the chunk refs, the sha256) goes to `floor_file`."""
    site = new_site(name, fleet)
    credential = enroll_agent(server, name)
    metadata = (("authorization", f"Bearer {credential}"),)
    t0 = time.perf_counter()
    refs: list[tuple[str, int]] = []
    creds = grpc.ssl_channel_credentials(server.ca_path.read_bytes())
    with grpc.secure_channel(server.address, creds) as ch, fbk.open("rb") as src:
        stub = agent_pb2_grpc.AgentServiceStub(ch)
        stub.PutSiteKey(
            agent_pb2.PutSiteKeyRequest(
                sealed_key=site.sealed_key,
                data_key_id=site.data_key_id,
                recovery_key_fingerprint=fleet.fingerprint,
            ),
            metadata=metadata,
            timeout=30,
        )
        batch: list[agent_pb2.PutChunkRequest] = []
        size = 0
        sent: set[str] = set()
        digest = hashlib.sha256()

        class Hashing(io.RawIOBase):
            def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
                n = src.readinto(buffer)
                digest.update(memoryview(buffer)[:n])
                return n

        def flush() -> None:
            nonlocal batch, size
            if batch:
                stub.PutChunks(iter(batch), metadata=metadata, timeout=300)
            batch, size = [], 0

        for chunk in seal_stream(site.keys, Hashing(), profile):
            refs.append((chunk.chunk_id, chunk.length))
            if chunk.chunk_id in sent:
                continue
            sent.add(chunk.chunk_id)
            batch.append(
                agent_pb2.PutChunkRequest(
                    id=chunk.chunk_id, data=chunk.blob, sha256=hashlib.sha256(chunk.blob).digest()
                )
            )
            size += len(chunk.blob)
            if size > 8 << 20:
                flush()
        stream = StreamInfo(0, "shop.fbk.zst", fbk.stat().st_size, digest.hexdigest())
        info = BackupInfo(
            str(uuid.uuid4()), "gbak", "/srv/shop.fdb", digest.hexdigest(), 1, (stream,)
        ).check()
        created = dt.datetime.now(dt.UTC).replace(microsecond=0)
        snap = seal_snapshot(site.keys, info.snapshot_info(name, created), stream_entries(0, refs))
        for part in snap.parts:
            batch.append(
                agent_pb2.PutChunkRequest(
                    id=part.chunk_id, data=part.blob, sha256=hashlib.sha256(part.blob).digest()
                )
            )
        flush()
        ids = sorted(snap.references)
        from google.protobuf.timestamp_pb2 import Timestamp

        stamp = Timestamp()
        stamp.FromDatetime(created.replace(tzinfo=None))

        def commit() -> object:
            yield agent_pb2.CommitSnapshotRequest(
                header=agent_pb2.SnapshotHeader(
                    snapshot_id=snap.snapshot_id,
                    record=snap.record,
                    record_sha256=hashlib.sha256(snap.record).digest(),
                    kind=agent_pb2.SNAPSHOT_KIND_DATABASE,
                    data_key_id=site.data_key_id,
                    created_at=stamp,
                    entries=snap.entries,
                    size=snap.size,
                    reference_count=len(ids),
                    backup_run_id=info.run_id,
                )
            )
            for at in range(0, len(ids), 10_000):
                yield agent_pb2.CommitSnapshotRequest(references=ids[at : at + 10_000])

        stub.CommitSnapshot(commit(), metadata=metadata, timeout=300)  # type: ignore[arg-type]
    # what the floor needs: the site's keys, the stream's chunks in order, its checksum
    floor = {"data_key": site.keys.data_key.hex(), "refs": refs, "sha256": digest.hexdigest()}
    floor_file.write_text(json.dumps(floor))
    return {"chunks": len(refs), "distinct": len(sent), "upload_s": time.perf_counter() - t0}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def time_cp(src: Path, dst: Path) -> tuple[float, float]:
    """(wall s, CPU s) of cp and the fsync."""
    dst.unlink(missing_ok=True)
    t0, c0 = time.perf_counter(), children_cpu()
    subprocess.run(["cp", str(src), str(dst)], check=True)
    fsync(dst)
    took, cpu = time.perf_counter() - t0, children_cpu() - c0
    dst.unlink()
    return took, cpu


def code_env(env: dict[str, str], src: Path | None) -> dict[str, str]:
    """`env` for a CLI that runs the code of the source tree `src` (None: this tree)."""
    return {**env, "PYTHONPATH": str(src or REPO)}


def time_restore(
    server: ServerHandle, name: str, key: Path, dst: Path, src: Path | None = None
) -> tuple[float, float, float]:
    """(wall s, CLI CPU s, server CPU s) of one `storesafe restore` (of the code in `src`)."""
    dst.unlink(missing_ok=True)
    assert server.proc is not None
    s0 = process_cpu(server.proc.pid)
    t0, c0 = time.perf_counter(), children_cpu()
    proc = subprocess.run(
        [
            str(BIN / "storesafe"),
            "--timeout",
            "300",
            "restore",
            name,
            "--to",
            str(dst),
            "--key",
            str(key),
            "--json",
        ],
        env=code_env(server.cli_env, src),
        capture_output=True,
        text=True,
        check=False,
    )
    took, cpu = time.perf_counter() - t0, children_cpu() - c0
    server_cpu = process_cpu(server.proc.pid) - s0
    if proc.returncode != 0:
        raise SystemExit(f"restore failed ({proc.returncode}): {proc.stderr}")
    dst.unlink()
    return took, cpu, server_cpu


def time_help(src: Path | None = None) -> tuple[float, float]:
    """(wall s, CPU s) of `storesafe --help` (of the code in `src`): the CLI's start-up."""
    t0, c0 = time.perf_counter(), children_cpu()
    subprocess.run(
        [str(BIN / "storesafe"), "--help"],
        env=code_env(dict(os.environ), src),
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - t0, children_cpu() - c0


def time_floor(
    server: ServerHandle, name: str, floor: dict[str, Any], dst: Path, threads: int, vault: bool
) -> tuple[float, float]:
    """(wall s, CPU s) of the floor (bench/restore_floor.py) of the same backup."""
    keys = SiteKeys.derive(name, bytes.fromhex(floor["data_key"]))
    chunk_dir = server.data_dir / "store" / "sites" / name / "chunks"
    refs = [(cid, int(n)) for cid, n in floor["refs"]]
    result = restore_floor.run(
        keys, chunk_dir, refs, floor["sha256"], dst, threads=threads, vault=vault
    )
    dst.unlink()
    return result.wall_s, result.cpu_s


FLOORS = {  # row name -> (threads, the vault's open_chunk)
    "floor, 1 thread": (1, False),
    "floor, 2 threads": (2, False),
    "floor, vault open_chunk, 1 thread": (1, True),
}


def restic_env(repo: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RESTIC_REPOSITORY": str(repo / "repo"),
        "RESTIC_PASSWORD": "bench-restore",
        "RESTIC_CACHE_DIR": str(repo / "cache"),
    }


def restic_backup(repo: Path, fbk: Path) -> None:
    """A restic repository holding the .fbk (made once, kept with the uploaded store)."""
    if (repo / "done").exists():
        return
    shutil.rmtree(repo, ignore_errors=True)
    env = restic_env(repo)
    subprocess.run(["restic", "init", "--quiet"], env=env, check=True, capture_output=True)
    subprocess.run(["restic", "backup", "--quiet", str(fbk)], env=env, check=True)
    (repo / "done").touch()


def time_restic(repo: Path, fbk: Path, target: Path) -> tuple[float, float]:
    """(wall s, CPU s) of `restic restore latest` of the .fbk, fsynced."""
    shutil.rmtree(target, ignore_errors=True)
    t0, c0 = time.perf_counter(), children_cpu()
    subprocess.run(
        ["restic", "restore", "latest", "--quiet", "--target", str(target)],
        env=restic_env(repo),
        check=True,
    )
    restored = target / str(fbk).lstrip("/")
    fsync(restored)
    took, cpu = time.perf_counter() - t0, children_cpu() - c0
    if restored.stat().st_size != fbk.stat().st_size:
        raise SystemExit(
            f"restic restored {restored.stat().st_size} bytes, not {fbk.stat().st_size}"
        )
    shutil.rmtree(target)
    return took, cpu


def profile_restore(server: ServerHandle, name: str, key: Path, dst: Path) -> str:
    """cProfile of one restore in this process (the CLI's own code path)."""
    from typer.testing import CliRunner

    from cli.main import app

    os.environ.update(server.cli_env)
    dst.unlink(missing_ok=True)
    prof = cProfile.Profile()
    prof.enable()
    result = CliRunner().invoke(
        app, ["--timeout", "300", "restore", name, "--to", str(dst), "--key", str(key)]
    )
    prof.disable()
    dst.unlink(missing_ok=True)
    if result.exit_code != 0:
        raise SystemExit(f"profiled restore failed: {result.output}")
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(18)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filler-mb", type=int, default=200, help="shop database item rows")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each")
    parser.add_argument("--quick", action="store_true", help="a ~20 MB backup, 2 runs each")
    parser.add_argument("--profile", action="store_true", help="cProfile one restore")
    parser.add_argument(
        "--chunk-kib", type=int, default=BACKUPS.avg_size // KIB, help="average chunk size"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="the server and store the last run uploaded"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also time the restore and `--help` with the CLI code of this source tree "
        "(e.g. `git archive main | tar -x -C DIR`), interleaved: before and after in one run "
        "(the server is this tree's)",
    )
    args = parser.parse_args()
    if args.quick:
        args.filler_mb, args.repeat = 20, 2
    profile = chunking(args.chunk_kib)
    fbk = make_backup(args.filler_mb, password())
    mb = fbk.stat().st_size / 1e6
    print(f"backup: {fbk} ({mb:.0f} MB), chunks of {args.chunk_kib} KiB average", flush=True)
    work = Path(tempfile.mkdtemp(prefix="restore-bench-", dir="/var/tmp"))
    suffix = "" if profile is BACKUPS else f"-{args.chunk_kib}k"
    kept = CACHE / f"server-{args.filler_mb}mb{suffix}"
    saved_files = [kept / n for n in ("bench.json", "facts.json", "floor.json")]
    if args.reuse and all(f.exists() for f in saved_files):
        saved = json.loads((kept / "bench.json").read_text())
        server = ServerHandle(
            Path(saved["data_dir"]), saved["address"], Path(saved["ca_path"]), saved["admin_token"]
        )
        server.start()
        facts = json.loads((kept / "facts.json").read_text())
        print("reusing the uploaded store in", kept, flush=True)
    else:
        shutil.rmtree(kept, ignore_errors=True)
        server = start_server(kept)
        facts = {}
    restic_repo = CACHE / f"restic-{args.filler_mb}mb"
    runs: dict[str, list[tuple[float, ...]]] = {}

    def timed(what: str, run: tuple[float, ...]) -> None:
        runs.setdefault(what, []).append(run)

    try:
        key, name = kept / "fleet.key", "bench-shop"
        if not facts:
            fleet = FleetPrivateKey.generate()
            write_key_file(key, fleet, dt.datetime.now(dt.UTC))
            facts = upload(server, name, fbk, fleet, profile, kept / "floor.json")
            (kept / "facts.json").write_text(json.dumps(facts))
            (kept / "bench.json").write_text(
                json.dumps(
                    {
                        "data_dir": str(server.data_dir),
                        "address": server.address,
                        "ca_path": str(server.ca_path),
                        "admin_token": server.admin_token,
                    }
                )
            )
        floor = json.loads((kept / "floor.json").read_text())
        print(
            f"uploaded {facts['chunks']} chunks ({facts['distinct']} distinct) in "
            f"{facts['upload_s']:.1f} s",
            flush=True,
        )
        restic_backup(restic_repo, fbk)
        load = os.getloadavg()[0]
        for _ in range(args.repeat):
            timed("cp", time_cp(fbk, work / "copy.fbk"))
            if args.baseline is not None:
                timed(
                    "baseline: storesafe restore",
                    time_restore(server, name, key, work / "restored.fbk", args.baseline),
                )
            timed("storesafe restore", time_restore(server, name, key, work / "restored.fbk"))
            timed("restic restore", time_restic(restic_repo, fbk, work / "restic"))
            for what, (threads, vault) in FLOORS.items():
                timed(what, time_floor(server, name, floor, work / "floor.fbk", threads, vault))
        for _ in range(5):  # start-up: short, so more runs
            if args.baseline is not None:
                timed("baseline: storesafe --help", time_help(args.baseline))
            timed("storesafe --help", time_help())
        load_end = os.getloadavg()[0]
        report = profile_restore(server, name, key, work / "profiled.fbk") if args.profile else ""
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    medians = {
        what: [statistics.median(r[at] for r in rs) for at in range(len(rs[0]))]
        for what, rs in runs.items()
    }
    cp_med = medians["cp"][0]
    ratio = cp_med / medians["storesafe restore"][0]
    rows = []
    for what, med in medians.items():
        moved = "" if what.endswith("--help") else f"{mb / med[0]:.0f}"
        versus = "" if what.endswith("--help") else f"{cp_med / med[0]:.3f}"
        server_cpu = f"{med[2]:.2f}" if len(med) > 2 else ""
        rows.append([what, f"{med[0]:.2f}", moved, versus, f"{med[1]:.2f}", server_cpu])
    print(table(["what", "median s", "MB/s", "vs cp", "CPU s", "server CPU s"], rows))
    restic_med = medians["restic restore"][0]
    print(
        "storesafe restore vs restic restore: "
        f"{restic_med / medians['storesafe restore'][0]:.2f}x its throughput"
    )
    print(f"goal: restore at least 0.5x cp's throughput: {'met' if ratio >= 0.5 else 'NOT met'}")
    print(f"load average (1 min): {load:.1f} at the start, {load_end:.1f} at the end")
    if max(load, load_end) > 1.5:
        print("warning: the machine was loaded: wall-clock figures are inflated")
    if report:
        print(report)
    path = write_json(
        f"restore_throughput{'-quick' if args.quick else ''}{suffix}.json",
        {
            "machine": machine(),
            "load_average_1m": [load, load_end],
            "backup_bytes": fbk.stat().st_size,
            "chunk_kib": args.chunk_kib,
            "chunks": facts["chunks"],
            "distinct_chunks": facts["distinct"],
            "baseline": str(args.baseline) if args.baseline else None,
            "runs": runs,
            "medians": medians,
            "ratio": ratio,
            "ratio_restic": cp_med / restic_med,
            "goal": 0.5,
            "profile": report or None,
        },
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
