"""A one-off scan pass from the console, for manual checks (Windows sharing, long paths, links).

    python -m agent.images FOLDER --state DIR [--settle 0] [--pace-ms 0] [--block-kib 1024]

Runs one pass with a consumer that only hashes (sha256) what it reads and prints
the pass result. `--pace-ms` sleeps after every block, so a file stays open long
enough to rename, delete or write it from another program while it is read.
Nothing is sent anywhere; the index lives in DIR.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from agent.images.consumer import FileToStore
from agent.images.index import INDEX_FILE, ImageIndex
from agent.images.scanner import Scanner
from agent.images.stream import FileStream
from common.clock import SystemClock


class _HashOnly:
    def store(self, file: FileToStore, stream: FileStream) -> Sequence[str]:
        digest = hashlib.sha256()
        for block in stream:
            digest.update(block)
        print(f"read {file.path} ({file.state.size:,} bytes)")
        return [digest.hexdigest()]

    def discard(self, file: FileToStore, reason: str) -> None:
        print(f"discarded {file.path}: {reason}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m agent.images", description=__doc__)
    ap.add_argument("folder")
    ap.add_argument("--state", type=Path, required=True, help="folder for the index")
    ap.add_argument("--settle", type=int, default=0, help="settle_seconds")
    ap.add_argument("--pace-ms", type=int, default=0, help="sleep after each block read")
    ap.add_argument("--block-kib", type=int, default=1024)
    args = ap.parse_args(argv)
    args.state.mkdir(parents=True, exist_ok=True)

    def pace(_size: int) -> None:
        time.sleep(args.pace_ms / 1000)

    with ImageIndex(args.state / INDEX_FILE) as index:
        scanner = Scanner(
            index,
            os.path.abspath(args.folder),
            settle_seconds=args.settle,
            clock=SystemClock(),
            block_size=args.block_kib * 1024,
            pace=pace if args.pace_ms else None,
        )
        result = scanner.scan(_HashOnly())
    shown = dataclasses.asdict(result)
    shown["skipped"] = {str(k): v for k, v in result.skipped.items()}
    print(json.dumps(shown, indent=2, default=str, ensure_ascii=False))
    return 1 if result.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
