"""agent.log: rotated by size in the state dir, UTC times, secrets never written."""

from __future__ import annotations

import logging
from pathlib import Path

from agent.logfile import LOG_FILE, file_handler, mask_secrets

SECRET = "ssa_0123456789abcdef_Zq9-xY_3kLmNoPqRsTuVwXyZ0123456789abcdefgh"


def logger_to(handler: logging.Handler) -> logging.Logger:
    log = logging.getLogger(f"test.logfile.{id(handler)}")
    log.propagate = False
    log.handlers = [handler]
    log.setLevel(logging.INFO)
    return log


def test_the_log_rotates_and_keeps_a_bounded_number_of_files(tmp_path: Path) -> None:
    handler = file_handler(tmp_path, max_bytes=2_000, backups=2)
    log = logger_to(handler)
    for n in range(300):
        log.info("line %04d %s", n, "x" * 40)
    handler.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [LOG_FILE, f"{LOG_FILE}.1", f"{LOG_FILE}.2"]
    assert all(p.stat().st_size <= 2_100 for p in tmp_path.iterdir())
    newest = (tmp_path / LOG_FILE).read_text().splitlines()[-1]
    assert newest.endswith("line 0299 " + "x" * 40)
    assert newest[:20].endswith("Z")  # 2026-...T..:..:..Z


def test_secrets_are_masked_in_messages_arguments_and_tracebacks(tmp_path: Path) -> None:
    handler = file_handler(tmp_path)
    log = logger_to(handler)
    log.info("enrolled with %s", SECRET)
    try:
        raise ValueError(f"bad token {SECRET}")
    except ValueError:
        log.exception("failed")
    handler.close()
    text = (tmp_path / LOG_FILE).read_text()
    assert "Zq9-xY" not in text
    assert text.count("ssa_0123456789abcdef_***") == 2  # the message and the exception


def test_mask_keeps_ordinary_text() -> None:
    assert mask_secrets("ssadm_0123456789abcdef_abc-DEF_1") == "ssadm_0123456789abcdef_***"
    assert mask_secrets("backup of C:\\RTOwin\\DATA.FDB into ss_dir") == (
        "backup of C:\\RTOwin\\DATA.FDB into ss_dir"
    )
