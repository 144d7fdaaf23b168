"""Whether the shop is writing to its database right now, for the backup to make way.

Sampled from an attachment of the agent's own: the database's next transaction
number moves whenever the shop starts transactions, and reading it (an
isc_database_info call) costs the server next to nothing, unlike a MON$ query.
The backup's own transaction moves it once, at its start, which one sample
cannot mistake for a busy shop. Until the first sample, taken 20 ms after
attaching, the shop counts as idle, and so it does if the attachment fails: the
backup never depends on this. (Counting it busy until then made every backup
start paced, which cost an idle shop's backup 0.1-0.2 s of 1 s; a busy shop
feels at most those 20 ms of a backup at full speed.)
"""

from __future__ import annotations

import contextlib
import threading

from common.firebird.connection import FirebirdTarget, attach

SAMPLE_SECONDS = 0.1
FIRST_SAMPLE_SECONDS = 0.02
BUSY_STEP = 2  # transactions started in one sample that mean the shop is at work


class ShopActivity:
    """A thread sampling the shop's transactions; `busy()` is true while they move."""

    def __init__(self, target: FirebirdTarget, *, sample_seconds: float = SAMPLE_SECONDS) -> None:
        self._target = target
        self._sample = sample_seconds
        self._busy = False  # until the first sample says otherwise
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shop-activity", daemon=True)

    def __enter__(self) -> ShopActivity:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def busy(self) -> bool:
        return self._busy

    def _run(self) -> None:
        with contextlib.suppress(Exception), attach(self._target, what="watching the shop") as con:
            last = int(con.next_transaction)
            wait = FIRST_SAMPLE_SECONDS  # a first look soon: an idle shop gets a fast backup
            while not self._stop.wait(wait):
                wait = self._sample
                now = int(con.next_transaction)
                self._busy = now - last >= BUSY_STEP
                last = now
        self._busy = False
