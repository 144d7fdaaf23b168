"""Benchmark: what the off-site upload of a day-2 backup sends, at several chunk sizes, vs restic.

    .venv/bin/python bench/offsite_dedup.py            # a shop database of >= 200 MB
    .venv/bin/python bench/offsite_dedup.py --quick    # about 30 MB, a minute

On the real Firebird server: builds a shop database (tests/support/shopsim.py),
takes a backup with the agent's own backup job (gbak through the services API,
compressed while it streams, raw and compressed sha256 recorded; verification
by restore is skipped to save time and the backup is marked good), applies one
shop day touching 1% of the rows (see SHOP DAY below), and takes the day-2
backup the same way. Then, per BACKUPS chunk size (4, 8, 16 KiB average), the
agent's upload code (agent.firebird.upload.upload_backup, the code the agent
runs) ships day 1 and then day 2 into a fresh in-process store that counts what
it receives; the figure is day 2's sealed bytes sent (chunks, manifest parts and
the snapshot record) as a share of the compressed day-2 file. Also: the CPU
seconds of the day-2 upload against the wall time of the day-2 backup, the
upload's peak Python memory (tracemalloc), and restic's added bytes for the
same pair of backup files (Debian's restic, `restic backup` of the plain day-1
then day-2 .fbk). JSON goes to bench/results/.

SHOP DAY (1% of the ITEMS rows, plus the money moving):
- 70% of the touched rows are new item rows (appended, like the day's sales);
- 25% are updates of recent rows (price and notes of rows among the newest 5%);
- 5% are updates scattered over the whole table (price only);
- and 200 transfers: two ACCOUNTS balance updates and one new TRANSFERS row each.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import random
import shutil
import string
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.domain.offsite import ChunkUpload, PutChunksResult, SnapshotCommit  # noqa: E402
from agent.firebird import upload as upload_module  # noqa: E402
from agent.firebird.files import Manifest, list_backups, mark_good  # noqa: E402
from agent.firebird.jobs import BackupSettings, run_backup_job  # noqa: E402
from agent.firebird.retention import RetentionPolicy  # noqa: E402
from agent.firebird.upload import Choice, UploadSettings, upload_backup  # noqa: E402
from bench.benchlib import machine, table, write_json  # noqa: E402
from common.clock import SystemClock  # noqa: E402
from common.firebird.connection import FirebirdTarget, attach  # noqa: E402
from common.vault import SiteKeys, new_data_key  # noqa: E402
from common.vault.chunking import KIB, MIB, Profile  # noqa: E402
from common.window import UploadWindow  # noqa: E402

DEFAULT_MANIFESTS = upload_module.database_manifests
WORK = Path("/var/tmp/storesafe-bench-offsite")
PASSWORD_FILE = Path("/etc/firebird/3.0/SYSDBA.password")
AVERAGES_KIB = (4, 8, 16)
MANIFEST_KIB = (48, 16, 8, 4)  # average manifest piece sizes tried at the chosen chunk size


def password() -> str:
    if os.environ.get("STORESAFE_FB_PASSWORD"):
        return os.environ["STORESAFE_FB_PASSWORD"]
    for line in PASSWORD_FILE.read_text().splitlines():
        if line.startswith("ISC_PASSWORD="):
            return line.split("=", 1)[1].strip().strip('"')
    raise SystemExit(f"no ISC_PASSWORD in {PASSWORD_FILE}")


def profile(avg_kib: int) -> Profile:
    """A BACKUPS profile of `avg_kib` average (min half of it, max 8 times)."""
    return Profile("backups", avg_kib * KIB // 2, avg_kib * KIB, avg_kib * 8 * KIB)


class CountingStore:
    """An in-process store: keeps chunk ids, counts what arrives (no hashing: agent CPU only)."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.bytes = 0
        self.record_bytes = 0
        self.asked = 0  # ids sent in MissingChunks questions

    def missing(self, ids: Sequence[str]) -> list[str]:
        self.asked += len(ids)
        return [i for i in ids if i not in self.ids]

    def put(self, chunks: Sequence[ChunkUpload]) -> PutChunksResult:
        for c in chunks:
            self.ids.add(c.chunk_id)
            self.bytes += len(c.data)
        return PutChunksResult(len(chunks), 0, sum(len(c.data) for c in chunks))

    def commit(self, snapshot: SnapshotCommit) -> bool:
        self.record_bytes += len(snapshot.record)
        return False


# --- the shop -------------------------------------------------------------------------


def shop_day(target: FirebirdTarget, *, share: float, seed: int) -> dict[str, int]:
    """The SHOP DAY of the module docstring; returns what it touched."""
    rng = random.Random(seed)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))) for _ in range(2000)]
    with attach(target, what="the bench's shop day") as con:
        cur = con.cursor()
        cur.execute("SELECT MAX(ID), COUNT(*) FROM ITEMS")
        last, count = (int(v or 0) for v in cur.fetchone())
        touched = int(count * share)
        new, recent = int(touched * 0.70), int(touched * 0.25)
        scattered = touched - new - recent
        cur.executemany(
            "INSERT INTO ITEMS VALUES (?, ?, ?, ?)",
            [
                (
                    last + i,
                    f"Item {last + i} {rng.choice(words)}",
                    " ".join(rng.choices(words, k=110))[:900],
                    round(rng.random() * 500, 2),
                )
                for i in range(1, new + 1)
            ],
        )
        newest = range(max(1, last - count // 20), last + 1)
        cur.executemany(
            "UPDATE ITEMS SET PRICE = ?, NOTES = ? WHERE ID = ?",
            [
                (round(rng.random() * 500, 2), " ".join(rng.choices(words, k=110))[:900], i)
                for i in rng.sample(newest, recent)
            ],
        )
        cur.executemany(
            "UPDATE ITEMS SET PRICE = ? WHERE ID = ?",
            [(round(rng.random() * 500, 2), i) for i in rng.sample(range(1, last + 1), scattered)],
        )
        cur.execute("SELECT MAX(ID) FROM ACCOUNTS")
        accounts = int(cur.fetchone()[0])
        for _ in range(200):
            a, b = rng.sample(range(1, accounts + 1), 2)
            cur.execute("UPDATE ACCOUNTS SET BALANCE = BALANCE - 5 WHERE ID = ?", (a,))
            cur.execute("UPDATE ACCOUNTS SET BALANCE = BALANCE + 5 WHERE ID = ?", (b,))
            cur.execute(
                "INSERT INTO TRANSFERS VALUES (NEXT VALUE FOR TRANSFER_SEQ, ?, ?, 5,"
                " CURRENT_TIMESTAMP)",
                (a, b),
            )
        con.commit()
    return {
        "item_rows": count,
        "new_rows": new,
        "recent_updates": recent,
        "scattered_updates": scattered,
        "transfers": 200,
    }


def backup(target: FirebirdTarget, folder: Path) -> tuple[Manifest, float]:
    """The agent's backup job (no verification); the backup marked good; its wall seconds."""
    settings = BackupSettings(backup_dir=folder, verify=False, retention=RetentionPolicy(0, 0, 0))
    outcome = run_backup_job(target, settings, clock=SystemClock())
    if not outcome.succeeded:
        raise SystemExit(f"backup failed: {outcome.error_message}")
    manifest = list_backups(folder)[-1]
    mark_good(folder, manifest)
    details: Any = outcome.details
    return list_backups(folder)[-1], float(details.backup_seconds)


# --- the upload -------------------------------------------------------------------------


@dataclasses.dataclass
class Sent:
    avg_kib: int
    mean_chunk_kib: float
    chunks: int
    chunks_sent: int
    sent_bytes: int
    manifest_bytes: int
    sent_vs_zstd_pct: float
    manifest_share_pct: float
    cpu_s: float
    asked_ids: int  # MissingChunks: ids asked about (64 hex each on the wire)
    asked_vs_zstd_pct: float


def upload(
    folder: Path, manifest: Manifest, keys: SiteKeys, store: CountingStore, spool: Path
) -> tuple[Any, float]:
    settings = UploadSettings(UploadWindow.parse(""), 0, 24 * 60)
    c0 = time.process_time()
    got = upload_backup(
        Choice(manifest),
        folder,
        settings,
        keys,
        store,
        spool_dir=spool,
        clock=SystemClock(),
        sleep=time.sleep,
    )
    return got, time.process_time() - c0


def manifest_profile(avg_kib: int) -> Profile:
    return Profile("database-manifests", avg_kib * KIB // 3, avg_kib * KIB, avg_kib * 6 * KIB)


def measure(
    folder: Path,
    day1: Manifest,
    day2: Manifest,
    avg_kib: int,
    spool: Path,
    *,
    manifest_kib: int | None = None,
) -> Sent:
    upload_module.BACKUPS = profile(avg_kib)  # type: ignore[attr-defined]
    upload_module.database_manifests = DEFAULT_MANIFESTS  # type: ignore[attr-defined]
    if manifest_kib is not None:
        upload_module.database_manifests = lambda _: manifest_profile(manifest_kib)  # type: ignore[attr-defined,assignment]
    keys = SiteKeys.derive("bench-shop", new_data_key())
    store = CountingStore()
    upload(folder, day1, keys, store, spool)
    bytes_before, records_before, asked_before = store.bytes, store.record_bytes, store.asked
    got, cpu = upload(folder, day2, keys, store, spool)
    chunks = got.chunks_sent + got.chunks_present
    sent = store.bytes - bytes_before + store.record_bytes - records_before
    manifest = MANIFEST_SENT[0] + store.record_bytes - records_before
    return Sent(
        avg_kib=avg_kib,
        mean_chunk_kib=round(day2.size_raw / max(chunks, 1) / KIB, 2),
        chunks=chunks,
        chunks_sent=got.chunks_sent,
        sent_bytes=sent,
        manifest_bytes=manifest,
        sent_vs_zstd_pct=round(100 * sent / day2.size_compressed, 2),
        manifest_share_pct=round(100 * manifest / max(sent, 1), 1),
        cpu_s=round(cpu, 3),
        asked_ids=store.asked - asked_before,
        asked_vs_zstd_pct=round(100 * (store.asked - asked_before) * 66 / day2.size_compressed, 2),
    )


MANIFEST_SENT = [0]  # sealed manifest-part bytes sent by the last upload


def count_manifest_parts() -> None:
    """Wrap the uploader's send_sealed (the manifest parts) to count what it sends."""
    from agent.offsite.uploader import Uploader

    original = Uploader.send_sealed

    def send_sealed(self: Uploader, chunks: Any) -> None:
        before = self.tally.bytes_sent
        original(self, chunks)
        MANIFEST_SENT[0] = self.tally.bytes_sent - before

    Uploader.send_sealed = send_sealed  # type: ignore[method-assign]


def peak_memory(folder: Path, day1: Manifest, day2: Manifest, avg_kib: int, spool: Path) -> float:
    upload_module.BACKUPS = profile(avg_kib)  # type: ignore[attr-defined]
    keys = SiteKeys.derive("bench-shop", new_data_key())
    store = CountingStore()
    upload(folder, day1, keys, store, spool)
    tracemalloc.start()
    upload(folder, day2, keys, store, spool)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return round(peak / MIB, 1)


# --- restic -----------------------------------------------------------------------------


def restic_added(day1: Path, day2: Path) -> dict[str, int]:
    """restic's added bytes for day 2 after day 1 (plain .fbk files, its defaults)."""
    if shutil.which("restic") is None:
        raise SystemExit("restic is not installed: apt-get install -y restic")
    with tempfile.TemporaryDirectory(dir=WORK) as repo:
        env = {**os.environ, "RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": repo}
        subprocess.run(["restic", "init"], env=env, check=True, capture_output=True)
        out: dict[str, int] = {}
        for name, path in (("day1", day1), ("day2", day2)):
            work = WORK / "restic-in"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            shutil.copy(path, work / "shop.fbk")  # the same path both days, as a shop has
            before = _tree_bytes(Path(repo))
            run = subprocess.run(
                ["restic", "backup", "--json", str(work)],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            summary = next(
                json.loads(line)
                for line in run.stdout.splitlines()
                if '"message_type":"summary"' in line
            )
            out[f"{name}_data_added"] = int(summary["data_added"])
            out[f"{name}_repo_growth"] = _tree_bytes(Path(repo)) - before
        return out


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def plain(folder: Path, manifest: Manifest, out: Path) -> Path:
    from agent.firebird.decompress import decompress_checked

    out.unlink(missing_ok=True)
    decompress_checked(folder / manifest.file, out, expected_sha256=manifest.sha256)
    return out


# --- main -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a ~30 MB database, one minute")
    parser.add_argument("--filler-mb", type=int, help="item rows in MB (default 220, quick 25)")
    args = parser.parse_args()
    filler = args.filler_mb or (25 if args.quick else 220)
    from tests.support.shopsim import create_shop

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    WORK.chmod(0o755)
    dbs, folder, spool = WORK / "db", WORK / "backups", WORK / "spool"
    for path in (dbs, folder, spool):
        path.mkdir()
        path.chmod(0o755)
    shutil.chown(dbs, "firebird", "firebird")
    target = FirebirdTarget("localhost", str(dbs / "shop.fdb"), "SYSDBA", password())
    print(f"building a shop database with {filler} MB of item rows ...", flush=True)
    t0 = time.perf_counter()
    create_shop(target, accounts=1000, filler_mb=filler)
    built = time.perf_counter() - t0
    database_mib = Path(target.database).stat().st_size / MIB
    print(f"  {database_mib:.0f} MiB in {built:.0f} s; day-1 backup ...", flush=True)
    day1, _ = backup(target, folder)
    day = shop_day(target, share=0.01, seed=7)
    print(f"  shop day: {day}; day-2 backup ...", flush=True)
    day2, day2_backup_s = backup(target, folder)
    count_manifest_parts()
    rows = []
    for avg in AVERAGES_KIB:
        print(f"  upload at {avg} KiB average chunks ...", flush=True)
        rows.append(measure(folder, day1, day2, avg, spool))
    manifests = []
    for kib in MANIFEST_KIB:
        print(f"  manifest pieces of {kib} KiB average ...", flush=True)
        got = measure(folder, day1, day2, 4, spool, manifest_kib=kib)
        manifests.append({"manifest_avg_kib": kib, **dataclasses.asdict(got)})
    upload_module.database_manifests = DEFAULT_MANIFESTS  # type: ignore[attr-defined]
    memory = peak_memory(folder, day1, day2, 4, spool)
    print("  restic ...", flush=True)
    restic = restic_added(
        plain(folder, day1, WORK / "day1.fbk"), plain(folder, day2, WORK / "day2.fbk")
    )
    default = next(r for r in rows if r.avg_kib == 4)
    result = {
        "bench": "offsite_dedup",
        "when": dt.datetime.now(dt.UTC).isoformat(),
        "machine": machine(),
        "quick": args.quick,
        "database_mib": round(database_mib, 1),
        "shop_day": day,
        "day2_raw_bytes": day2.size_raw,
        "day2_zstd_bytes": day2.size_compressed,
        "day2_backup_s": day2_backup_s,
        "profiles": [dataclasses.asdict(r) for r in rows],
        "manifest_profiles": manifests,
        "upload_cpu_vs_backup": round(default.cpu_s / day2_backup_s, 3),
        "upload_peak_python_mib": memory,
        "restic": restic,
        "restic_vs_zstd_pct": round(100 * restic["day2_repo_growth"] / day2.size_compressed, 1),
    }
    path = write_json(
        "offsite_dedup.json" if not args.quick else "offsite_dedup-quick.json", result
    )
    print()
    print(
        f"database {database_mib:.0f} MiB; day-2 backup {day2.size_raw / MIB:.1f} MiB raw, "
        f"{day2.size_compressed / MIB:.1f} MiB zstd, {day2_backup_s:.1f} s"
    )
    print(
        table(
            [
                "avg KiB",
                "mean KiB",
                "chunks",
                "sent",
                "sent KiB",
                "manifest KiB",
                "% of zstd",
                "manifest %",
                "cpu s",
                "ids asked",
                "asked % of zstd",
            ],
            [
                [
                    r.avg_kib,
                    r.mean_chunk_kib,
                    r.chunks,
                    r.chunks_sent,
                    r.sent_bytes // KIB,
                    r.manifest_bytes // KIB,
                    r.sent_vs_zstd_pct,
                    r.manifest_share_pct,
                    r.cpu_s,
                    r.asked_ids,
                    r.asked_vs_zstd_pct,
                ]
                for r in rows
            ],
        )
    )
    print(
        table(
            ["manifest avg KiB", "sent KiB", "manifest KiB", "% of zstd", "manifest %"],
            [
                [
                    m["manifest_avg_kib"],
                    m["sent_bytes"] // KIB,
                    m["manifest_bytes"] // KIB,
                    m["sent_vs_zstd_pct"],
                    m["manifest_share_pct"],
                ]
                for m in manifests
            ],
        )
    )
    print(
        f"restic day 2: data_added {restic['day2_data_added'] // KIB} KiB, repository grew "
        f"{restic['day2_repo_growth'] // KIB} KiB ({result['restic_vs_zstd_pct']}% of zstd)"
    )
    print(
        f"upload CPU {default.cpu_s:.2f} s vs backup {day2_backup_s:.2f} s: "
        f"{result['upload_cpu_vs_backup']}x; peak Python memory {memory} MiB"
    )
    print(f"-> {path}")
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
