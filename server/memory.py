"""How the serving process keeps memory work off the upload path: the C allocator's
thresholds, and the garbage collector's view of the objects made at start-up.

- Every chunk an agent uploads is copied a few times on its way to the disk (gRPC's
  receive buffers, the message, the protobuf field), each copy a buffer of up to a few
  MiB, made in one thread and freed in another. glibc's malloc hands buffers that big
  to mmap, or gives the top of a heap back to the kernel as soon as a few MiB there are
  free, so the next upload's buffers are new pages that the kernel faults in and zeroes
  one by one: about a tenth of the server's CPU during ingest on this project's 2-core
  box (bench/README.md, image_sync.py). Raising the two thresholds keeps such buffers in
  the heaps for reuse; what is kept is bounded by what uploads in flight hold at their
  peak, which the server holds anyway while they run. Only glibc on Linux is tuned; an
  operator's own MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ settings win.
- The modules a server imports make about 150,000 objects that live as long as the
  process; every full collection walked all of them again (~0.1 s each here) while
  uploads churn through short-lived ones. `freeze_startup_objects` moves them out of the
  collector's generations (`gc.freeze`), as long-running CPython servers do.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys

MMAP_THRESHOLD = 32 << 20
"""Blocks at least this big still come from mmap (glibc's largest allowed value)."""
TRIM_THRESHOLD = 128 << 20
"""Free memory at the top of a heap is given back to the kernel above this much."""
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_OVERRIDES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_large_buffers() -> bool:
    """Set glibc's mmap and trim thresholds as described above; whether they were set."""
    if not sys.platform.startswith("linux") or any(name in os.environ for name in _OVERRIDES):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def freeze_startup_objects() -> int:
    """Collect once, then leave every object alive now out of later collections; how
    many objects that is. Call it once, after the imports, before serving."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
