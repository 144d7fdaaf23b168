"""Online validation finds a damaged data page in the live database that backups would miss."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest

from agent.domain.reports import Outcome, ValidationDetails
from agent.firebird.jobs import run_validation_job
from common.clock import SystemClock
from common.firebird.connection import FirebirdTarget, attach
from tests.integration.firebird.conftest import new_target

pytestmark = pytest.mark.firebird
DATA_PAGE = 5


def damage_a_data_page(target: FirebirdTarget, table: str) -> int:
    """Scramble the record index of one data page of `table` (server must have closed the file)."""
    with attach(target) as con:
        cur = con.cursor()
        cur.execute(
            "SELECT RDB$RELATION_ID FROM RDB$RELATIONS WHERE RDB$RELATION_NAME = ?", (table,)
        )
        relation = int(cur.fetchone()[0])
        page_size = int(con.page_size)
        con.commit()
    time.sleep(0.5)  # last detach: SuperServer closes the file
    path = Path(target.database)
    data = bytearray(path.read_bytes())
    pages = [
        n
        for n in range(len(data) // page_size)
        if data[n * page_size] == DATA_PAGE
        and struct.unpack_from("<H", data, n * page_size + 20)[0] == relation
    ]
    assert pages, "no data page found"
    page = pages[len(pages) // 2]
    base = page * page_size
    count = struct.unpack_from("<H", data, base + 22)[0]
    for slot in range(count):
        struct.pack_into("<HH", data, base + 24 + 4 * slot, 0xFFF0, 0x0FFF)
    with open(path, "r+b") as fh:
        fh.seek(base)
        fh.write(data[base : base + page_size])
    return page


def test_clean_then_damaged_live_database(fb_root: Path, fb_password: str) -> None:
    target = new_target(fb_root, fb_password, "damaged", accounts=50, filler_mb=2)
    assert run_validation_job(target, clock=SystemClock()).succeeded
    damage_a_data_page(target, "ITEMS")
    outcome = run_validation_job(target, clock=SystemClock())
    report = outcome.to_report()
    assert report.outcome == Outcome.FAILED
    assert report.error_class == "validate.errors_found"
    assert isinstance(report.details, ValidationDetails)
    assert report.details.errors > 0
    assert "ITEMS" in report.details.summary or "page" in report.details.summary.lower()
