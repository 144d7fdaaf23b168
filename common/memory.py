"""The C allocator's thresholds for processes that move MiB-sized buffers through memory.

Every chunk an agent seals and sends, and every chunk the server receives, is
copied a few times on its way (file reads, the chunk, the sealed blob, gRPC's
buffers, the protobuf message), each copy a buffer of up to a few MiB, often
made in one thread and freed in another. glibc's malloc hands buffers that big
to mmap, or gives the top of a heap back to the kernel as soon as a few MiB
there are free, so the next buffers are new pages that the kernel faults in
and zeroes one by one: about a tenth of the server's CPU during ingest, and
7% of the agent's in a first image sync, on this project's 2-core box
(bench/README.md, image_sync.py); more on a virtual machine whose host takes
freed memory back. Raising the two thresholds keeps such buffers in the heaps
for reuse; what is kept is bounded by what the process held at its peak, which
it holds anyway. Only glibc on Linux is tuned (elsewhere `keep_large_buffers`
does nothing); an operator's own MALLOC_MMAP_THRESHOLD_ or
MALLOC_TRIM_THRESHOLD_ settings win.
"""

from __future__ import annotations

import ctypes
import os
import sys

MMAP_THRESHOLD = 32 << 20
"""Blocks at least this big still come from mmap (glibc's largest allowed value)."""
TRIM_THRESHOLD = 128 << 20
"""Free memory at the top of a heap is given back to the kernel above this much."""
AGENT_TRIM_THRESHOLD = 16 << 20
"""The agent's: its peak memory must stay under 150 MB on a shop PC. Keeping 128 MiB took
a first image sync of 20,000 files from 139 to 149 MiB; 16 MiB keeps most of the gain
(the buffers of a batch in flight are reused) without holding what a pass freed."""
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_OVERRIDES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_large_buffers(trim_threshold: int = TRIM_THRESHOLD) -> bool:
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
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )
