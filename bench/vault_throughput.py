"""Benchmark: the sealed format's throughput, and how well gbak backups deduplicate.

    .venv/bin/python bench/vault_throughput.py                 # throughput + gbak dedup
    .venv/bin/python bench/vault_throughput.py --quick         # small sizes, ~1 min
    .venv/bin/python bench/vault_throughput.py --no-firebird   # throughput only
    .venv/bin/python bench/vault_throughput.py --reuse         # the last run's two backups

Throughput (one thread, data in memory, so the disk is not measured):
chunk + keyed id + zstd-where-it-pays + seal (`seal_stream`), and open +
id check (`open_chunk`), in MB/s of plaintext, for incompressible bytes
(os.urandom) and compressible bytes (a real gbak backup when Firebird is
here, else shop-like text), with the backup and the image chunking profiles.

Dedup: builds a shop database (tests/support/shopsim.py) of --filler-mb MB,
takes a gbak backup (day 1), applies a shop day (new transfers, ~1% of the
item rows updated, scattered), takes another (day 2), and for several
average chunk sizes reports the share of day 2's bytes already in day 1's
chunks, the chunk count, and what would be sent (the sealed new chunks)
against the zstd-compressed day-2 file. Linux, as root, with the Firebird
server from scripts/setup-firebird.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import zstandard

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common.vault.chunking import BACKUPS, IMAGES, KIB, MIB, Profile, chunk_bytes  # noqa: E402
from common.vault.chunks import cut_stream, open_chunk, seal_chunk, seal_stream  # noqa: E402
from common.vault.manifest import Entry, SnapshotInfo  # noqa: E402
from common.vault.sitekeys import SiteKeys, new_data_key  # noqa: E402
from common.vault.snapshot import SealedSnapshot, seal_snapshot  # noqa: E402

CACHE = Path("/var/tmp/storesafe-vault-bench")
RESULTS = REPO / "bench" / "results"
PASSWORD_FILE = Path("/etc/firebird/3.0/SYSDBA.password")


def password() -> str:
    if os.environ.get("STORESAFE_FB_PASSWORD"):
        return os.environ["STORESAFE_FB_PASSWORD"]
    for line in PASSWORD_FILE.read_text().splitlines():
        if line.startswith("ISC_PASSWORD="):
            return line.split("=", 1)[1].strip().strip('"')
    raise SystemExit(f"no password in {PASSWORD_FILE}; set STORESAFE_FB_PASSWORD")


def shop_text(size: int) -> bytes:
    rng = random.Random(1)
    words = [rng.randbytes(rng.randint(2, 6)).hex() for _ in range(3000)]
    out = io.StringIO()
    n = 0
    while out.tell() < size:
        n += 1
        out.write(f"{n};Item {n};{' '.join(rng.choices(words, k=12))};{rng.random() * 500:.2f}\n")
    return out.getvalue().encode()[:size]


@dataclass
class Throughput:
    data: str
    profile: str
    mib: float
    seal_mb_s: float
    open_mb_s: float
    seal_cpu_mb_s: float
    open_cpu_mb_s: float
    stored_ratio: float
    compressed_chunks: float


def throughput(keys: SiteKeys, name: str, data: bytes, profile: Profile) -> Throughput:
    t0, c0 = time.perf_counter(), time.process_time()
    sealed = list(seal_stream(keys, io.BytesIO(data), profile))
    t1, c1 = time.perf_counter(), time.process_time()
    total = 0
    for chunk in sealed:
        total += len(open_chunk(keys, chunk.chunk_id, chunk.blob))
    t2, c2 = time.perf_counter(), time.process_time()
    assert total == len(data)
    mb = len(data) / 1e6
    return Throughput(
        data=name,
        profile=profile.name,
        mib=len(data) / MIB,
        seal_mb_s=mb / (t1 - t0),
        open_mb_s=mb / (t2 - t1),
        seal_cpu_mb_s=mb / (c1 - c0),
        open_cpu_mb_s=mb / (c2 - c1),
        stored_ratio=sum(len(c.blob) for c in sealed) / len(data),
        compressed_chunks=sum(c.compressed for c in sealed) / len(sealed),
    )


# --- gbak day 1 / day 2 -------------------------------------------------------------


def gbak(database: Path, out: Path, pw: str) -> float:
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    subprocess.run(
        [
            "gbak",
            "-b",
            "-g",
            "-se",
            "localhost:service_mgr",
            str(database),
            str(out),
            "-user",
            "SYSDBA",
            "-pas",
            pw,
        ],
        check=True,
    )
    return time.perf_counter() - t0


def shop_day(database: Path, pw: str, *, transfers: int, share: float, seed: int) -> int:
    """New transfers and a share of item rows updated at random; returns rows touched."""
    from common.firebird.connection import FirebirdTarget, attach

    rng = random.Random(seed)
    target = FirebirdTarget("localhost", str(database), "SYSDBA", pw)
    with attach(target, what="the bench's shop day") as con:
        cur = con.cursor()
        cur.execute("SELECT MAX(ID) FROM ITEMS")
        items = int(cur.fetchone()[0] or 0)
        cur.execute("SELECT MAX(ID) FROM ACCOUNTS")
        accounts = int(cur.fetchone()[0])
        for _ in range(transfers):
            a, b = rng.sample(range(1, accounts + 1), 2)
            cur.execute("UPDATE ACCOUNTS SET BALANCE = BALANCE - 5 WHERE ID = ?", (a,))
            cur.execute("UPDATE ACCOUNTS SET BALANCE = BALANCE + 5 WHERE ID = ?", (b,))
            cur.execute(
                "INSERT INTO TRANSFERS VALUES (NEXT VALUE FOR TRANSFER_SEQ, ?, ?, 5,"
                " CURRENT_TIMESTAMP)",
                (a, b),
            )
        touched = rng.sample(range(1, items + 1), int(items * share)) if items else []
        cur.executemany(
            "UPDATE ITEMS SET PRICE = ? WHERE ID = ?",
            [(round(rng.random() * 500, 2), i) for i in touched],
        )
        con.commit()
    return transfers * 3 + len(touched)


def make_backups(filler_mb: int, pw: str) -> tuple[Path, Path, dict[str, float]]:
    from common.firebird.connection import FirebirdTarget
    from tests.support.shopsim import create_shop

    CACHE.mkdir(parents=True, exist_ok=True)
    shutil.chown(CACHE, "firebird", "firebird")
    database = CACHE / f"shop-{filler_mb}mb.fdb"
    database.unlink(missing_ok=True)
    target = FirebirdTarget("localhost", str(database), "SYSDBA", pw)
    print(f"building a shop database with {filler_mb} MB of item rows ...", flush=True)
    create_shop(target, accounts=1000, filler_mb=filler_mb)
    day1, day2 = CACHE / "day1.fbk", CACHE / "day2.fbk"
    facts = {"day1_gbak_s": gbak(database, day1, pw)}
    facts["rows_touched"] = shop_day(database, pw, transfers=200, share=0.01, seed=5)
    facts["day2_gbak_s"] = gbak(database, day2, pw)
    facts["database_mib"] = database.stat().st_size / MIB
    database.unlink()
    return day1, day2, facts


@dataclass
class Dedup:
    profile: str
    chunks: int
    mean_kib: float
    dedup_pct: float
    sent_kib: float
    manifest_kib: float
    sent_vs_zstd_pct: float


def _snapshot(keys: SiteKeys, data: bytes, profile: Profile) -> tuple[set[str], SealedSnapshot]:
    sealed = list(seal_stream(keys, io.BytesIO(data), profile))
    entry = Entry("shop.fbk", len(data), 0, tuple((c.chunk_id, c.length) for c in sealed))
    info = SnapshotInfo(keys.site, dt.datetime.now(dt.UTC), "shop.fdb")
    return {c.chunk_id for c in sealed}, seal_snapshot(keys, info, [entry])


def dedup(keys: SiteKeys, day1: bytes, day2: bytes, profile: Profile, zstd_size: int) -> Dedup:
    """Day 2 against day 1: what is new, and what sending it costs, manifest included."""
    seen, first = _snapshot(keys, day1, profile)
    _, second = _snapshot(keys, day2, profile)
    chunks = list(chunk_bytes(day2, profile, keys.chunker_seed))
    new = {keys.chunk_id(c): c for c in chunks if keys.chunk_id(c) not in seen}
    new_bytes = sum(len(c) for c in chunks if keys.chunk_id(c) not in seen)
    sent = sum(len(seal_chunk(keys, c).blob) for c in new.values())
    old_parts = {p.chunk_id for p in first.parts}
    manifest = len(second.record) + sum(
        len(p.blob) for p in second.parts if p.chunk_id not in old_parts
    )
    return Dedup(
        profile=profile.name,
        chunks=len(chunks),
        mean_kib=len(day2) / len(chunks) / KIB,
        dedup_pct=100 * (1 - new_bytes / len(day2)),
        sent_kib=sent / KIB,
        manifest_kib=manifest / KIB,
        sent_vs_zstd_pct=100 * (sent + manifest) / zstd_size,
    )


def upload_cpu(keys: SiteKeys, day1: bytes, day2: bytes) -> float:
    """CPU seconds to prepare day 2's upload: cut and name every chunk, seal the new ones
    and the snapshot (what the agent does besides the network)."""
    known = {c.chunk_id for c in cut_stream(keys, io.BytesIO(day1), BACKUPS)}
    c0 = time.process_time()
    refs = []
    for chunk in cut_stream(keys, io.BytesIO(day2), BACKUPS):
        if chunk.chunk_id not in known:
            chunk.seal(keys)
        refs.append((chunk.chunk_id, len(chunk.data)))
    entry = Entry("shop.fbk", len(day2), 0, tuple(refs))
    seal_snapshot(keys, SnapshotInfo(keys.site, dt.datetime.now(dt.UTC), "shop.fdb"), [entry])
    return time.process_time() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="throughput data size")
    parser.add_argument("--filler-mb", type=int, default=40, help="shop database item rows")
    parser.add_argument("--quick", action="store_true", help="32 MiB, 10 MB database")
    parser.add_argument("--no-firebird", action="store_true", help="skip the gbak part")
    parser.add_argument("--reuse", action="store_true", help="reuse the last run's backups")
    args = parser.parse_args()
    if args.quick:
        args.mib, args.filler_mb = 32, 10
    keys = SiteKeys.derive("bench-shop", new_data_key())
    load = os.getloadavg()[0]
    print(f"load average {load:.2f} (2 cores; figures are inflated when it is high)")

    day1 = day2 = b""
    facts: dict[str, float] = {}
    if args.reuse:
        facts = json.loads((CACHE / "facts.json").read_text())
        day1, day2 = (CACHE / "day1.fbk").read_bytes(), (CACHE / "day2.fbk").read_bytes()
    elif not args.no_firebird:
        one, two, facts = make_backups(args.filler_mb, password())
        (CACHE / "facts.json").write_text(json.dumps(facts))
        day1, day2 = one.read_bytes(), two.read_bytes()

    size = args.mib * MIB
    compressible = (day2 * (size // max(len(day2), 1) + 1))[:size] if day2 else shop_text(size)
    rows = []
    for name, data in (("random", os.urandom(size)), ("gbak" if day2 else "text", compressible)):
        for profile in (BACKUPS, IMAGES):
            rows.append(throughput(keys, name, data, profile))
    print(
        "\n| data | profile | MiB | seal MB/s (per CPU s) | open MB/s (per CPU s) "
        "| stored/plain | compressed chunks |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r.data} | {r.profile} | {r.mib:.0f} | {r.seal_mb_s:.0f} ({r.seal_cpu_mb_s:.0f}) "
            f"| {r.open_mb_s:.0f} ({r.open_cpu_mb_s:.0f}) | {r.stored_ratio:.3f} "
            f"| {100 * r.compressed_chunks:.0f}% |"
        )

    results: dict[str, object] = {"load": load, "throughput": [r.__dict__ for r in rows]}
    if day2:
        zstd_size = len(zstandard.ZstdCompressor(level=3).compress(day2))
        facts |= {"day2_mib": len(day2) / MIB, "day2_zstd_mib": zstd_size / MIB}
        print(
            f"\nday-2 backup {len(day2) / MIB:.1f} MiB (zstd -3: {zstd_size / MIB:.1f} MiB), "
            f"database {facts['database_mib']:.0f} MiB, {facts['rows_touched']:.0f} rows "
            f"touched; gbak {facts['day2_gbak_s']:.1f} s"
        )
        profiles = [
            Profile(f"avg {k} KiB (min /4, max x4)", k * KIB // 4, k * KIB, k * KIB * 4)
            for k in (4, 8, 16, 32, 64, 256, 1024)
        ]
        table = [dedup(keys, day1, day2, p, zstd_size) for p in [*profiles, BACKUPS, IMAGES]]
        print(
            "\n| profile | chunks | mean KiB | dedup | sent KiB | manifest KiB | sent / zstd file |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for d in table:
            print(
                f"| {d.profile} | {d.chunks} | {d.mean_kib:.1f} | {d.dedup_pct:.1f}% "
                f"| {d.sent_kib:.0f} | {d.manifest_kib:.0f} | {d.sent_vs_zstd_pct:.1f}% |"
            )
        cpu = upload_cpu(keys, day1, day2)
        print(
            f"\nday-2 upload preparation (backups profile): {cpu:.2f} CPU s, "
            f"{cpu / facts['day2_gbak_s']:.2f}x the day-2 gbak's {facts['day2_gbak_s']:.2f} s"
        )
        facts["upload_cpu_s"] = cpu
        results |= {"backup": facts, "dedup": [d.__dict__ for d in table]}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("vault_throughput-quick.json" if args.quick else "vault_throughput.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
