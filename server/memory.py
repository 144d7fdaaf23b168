"""How the serving process keeps memory work off the upload path: the C allocator's
thresholds (`keep_large_buffers`, common.memory), and the garbage collector's view of the
objects made at start-up.

The modules a server imports make about 150,000 objects that live as long as the
process; every full collection walked all of them again (~0.1 s each here) while
uploads churn through short-lived ones. `freeze_startup_objects` moves them out of the
collector's generations (`gc.freeze`), as long-running CPython servers do.
"""

from __future__ import annotations

import gc

from common.memory import keep_large_buffers

__all__ = ["freeze_startup_objects", "keep_large_buffers"]


def freeze_startup_objects() -> int:
    """Collect once, then leave every object alive now out of later collections; how
    many objects that is. Call it once, after the imports, before serving."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
