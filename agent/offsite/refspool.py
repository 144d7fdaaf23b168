"""Chunk refs spooled to files in the state dir, and the distinct ids they name, in bounded memory.

A database backup of a few GB is hundreds of thousands of chunks; its
snapshot lists every chunk ref in order (the manifest) and its commit names
every distinct chunk id once (CommitSnapshot's references, counted in the
header). `RefSpool` writes each ref (id bytes and plaintext length, 36 bytes)
in order to a file and reads them back in order. `DistinctIds.build` sorts
the ids in runs of at most `run_ids` into run files and merges the runs
(heapq.merge, at most FAN_IN at a time), dropping repeats, into one file of
sorted distinct ids: memory holds one run while sorting and one small block
per run while merging, whatever the backup's size. A `DistinctIds` knows its length and can be
iterated as often as needed (each iteration reads the file again).
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

from common.vault import ChunkRef

ID_BYTES = 32
RUN_IDS = 1 << 16
"""Ids sorted at once in memory (about 5 MB as Python bytes objects)."""
_REF = struct.Struct(f"<{ID_BYTES}sI")  # a chunk ref in the spool: id bytes, plaintext length
_BLOCK = 4096  # records read at a time
_MERGE_BLOCK = 256  # ids read at a time from each run while merging
FAN_IN = 64
"""Runs merged at once (open files); more are merged in rounds."""


class RefSpool:
    """One stream's chunk refs in a file: written in order, read back in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.count = 0

    def add(self, chunk_id: str, length: int) -> None:
        self._fh.write(_REF.pack(bytes.fromhex(chunk_id), length))
        self.count += 1

    def close(self) -> None:
        self._fh.close()

    def refs(self) -> Iterator[ChunkRef]:
        """The refs in the order they were added (the spool must be closed)."""
        for raw_id, length in self._records():
            yield raw_id.hex(), length

    def ids(self) -> Iterator[bytes]:
        """The chunk ids' bytes in the order they were added, repeats included."""
        for raw_id, _ in self._records():
            yield raw_id

    def _records(self) -> Iterator[tuple[bytes, int]]:
        with open(self.path, "rb") as fh:
            while block := fh.read(_REF.size * _BLOCK):
                yield from _REF.iter_unpack(block)


class DistinctIds:
    """Sorted distinct chunk ids (hex) in a file: `len` and repeated iteration."""

    def __init__(self, path: Path, count: int) -> None:
        self.path = path
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[str]:
        with open(self.path, "rb") as fh:
            while block := fh.read(ID_BYTES * _BLOCK):
                for at in range(0, len(block), ID_BYTES):
                    yield block[at : at + ID_BYTES].hex()

    def __contains__(self, item: object) -> bool:
        """A binary search of the sorted file."""
        if not isinstance(item, str):
            return False
        try:
            want = bytes.fromhex(item)
        except ValueError:
            return False
        lo, hi = 0, self.count
        with open(self.path, "rb") as fh:
            while lo < hi:
                mid = (lo + hi) // 2
                fh.seek(mid * ID_BYTES)
                got = fh.read(ID_BYTES)
                if got == want:
                    return True
                if got < want:
                    lo = mid + 1
                else:
                    hi = mid
        return False

    def unlink(self) -> None:
        self.path.unlink(missing_ok=True)

    @classmethod
    def build(cls, path: Path, ids: Iterable[bytes], *, run_ids: int = 0) -> DistinctIds:
        """The distinct ids of `ids` (each ID_BYTES long), sorted, into the file `path`, sorted
        in runs of `run_ids` (0: RUN_IDS); the run files beside it are removed whatever
        happens."""
        run_ids = run_ids or RUN_IDS
        made: list[Path] = []  # every run file, removed at the end

        def new_run() -> Path:
            made.append(path.with_name(f"{path.name}.run{len(made):06d}"))
            return made[-1]

        try:
            runs: list[Path] = []
            run: list[bytes] = []
            for chunk_id in ids:
                run.append(chunk_id)
                if len(run) >= run_ids:
                    runs.append(_write_run(new_run(), run))
            if run or not runs:
                runs.append(_write_run(new_run(), run))
            while len(runs) > FAN_IN:  # merge rounds: never more than FAN_IN files open
                merged = []
                for at in range(0, len(runs), FAN_IN):
                    merged.append(new_run())
                    _merge_into(runs[at : at + FAN_IN], merged[-1])
                for r in runs:
                    r.unlink()
                runs = merged
            return cls(path, _merge_into(runs, path))
        finally:
            for r in made:
                r.unlink(missing_ok=True)


def _write_run(name: Path, run: list[bytes]) -> Path:
    """`run`, sorted and without repeats, into the file `name`; `run` is emptied."""
    run.sort()
    with open(name, "wb") as fh:
        last = b""
        for chunk_id in run:
            if len(chunk_id) != ID_BYTES:
                raise ValueError(f"a chunk id of {len(chunk_id)} bytes, not {ID_BYTES}")
            if chunk_id != last:
                fh.write(chunk_id)
                last = chunk_id
    run.clear()
    return name


def _merge_into(runs: list[Path], out: Path) -> int:
    """The sorted runs merged into `out` without repeats; how many ids it holds."""
    count = 0
    with open(out, "wb") as fh:
        last = b""
        for chunk_id in heapq.merge(*(_read_run(r) for r in runs)):
            if chunk_id != last:
                fh.write(chunk_id)
                count += 1
                last = chunk_id
    return count


def _read_run(path: Path) -> Iterator[bytes]:
    with open(path, "rb", buffering=0) as fh:
        while block := fh.read(ID_BYTES * _MERGE_BLOCK):
            for at in range(0, len(block), ID_BYTES):
                yield block[at : at + ID_BYTES]
