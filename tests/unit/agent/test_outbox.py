"""The outbox keeps every report until the server acknowledged it, across crashes."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.domain.errors import StateDirUnusable
from agent.domain.reports import BackupDetails, Verification
from agent.outbox import Outbox
from tests.support.agentfakes import report

REPO = Path(__file__).resolve().parents[3]


def test_put_then_peek_returns_reports_oldest_first(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as box:
        for n in (3, 1, 2):
            assert box.put(report(n))
        assert [p.report.id for p in box.peek(10)] == ["report-0003", "report-0001", "report-0002"]
        assert box.oldest() is not None
        assert box.oldest().report.id == "report-0003"  # type: ignore[union-attr]
        assert box.pending() == 3


def test_put_is_idempotent_by_report_id(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as box:
        assert box.put(report(1))
        assert not box.put(report(1, trigger="remote"))
        assert box.pending() == 1
        assert box.oldest().report.trigger == "schedule"  # type: ignore[union-attr]


def test_report_details_survive_the_outbox(tmp_path: Path) -> None:
    details = BackupDetails(
        file="shop-2026.fbk.zst",
        verification=Verification.PASSED,
        table_counts={"CUSTOMERS": 10},
        problems=("row drop",),
    )
    original = report(1, details=details)
    with Outbox(tmp_path / "o.sqlite") as box:
        box.put(original)
        assert box.oldest().report == original  # type: ignore[union-attr]


def test_remove_only_the_acknowledged_report(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as box:
        box.put(report(1))
        box.put(report(2))
        box.remove("report-0001")
        assert [p.report.id for p in box.peek(10)] == ["report-0002"]
        box.remove("report-0002")
        assert box.oldest() is None
        assert box.pending() == 0


def test_failures_are_counted_and_the_report_stays(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as box:
        box.put(report(1))
        box.record_failure("report-0001", "server down")
        box.record_failure("report-0001", "server still down")
        item = box.oldest()
        assert item is not None
        assert (item.attempts, item.last_error) == (2, "server still down")


def test_rejected_reports_leave_the_queue_but_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with Outbox(path) as box:
        box.put(report(1))
        box.put(report(2))
        box.reject("report-0001", "too large")
        assert [p.report.id for p in box.peek(10)] == ["report-0002"]
        assert (box.pending(), box.rejected()) == (1, 1)
    with sqlite3.connect(path) as db:
        body, reason = db.execute("SELECT body, reason FROM rejected").fetchone()
    assert json.loads(body)["id"] == "report-0001"
    assert reason == "too large"


def test_an_unreadable_row_is_set_aside_not_a_blocker(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with Outbox(path) as box:
        box.put(report(1))
        box.put(report(2))
    with sqlite3.connect(path) as db:
        db.execute("UPDATE pending SET body = '{broken' WHERE id = 'report-0001'")
    with Outbox(path) as box:
        item = box.oldest()
        assert item is not None
        assert item.report.id == "report-0002"
        assert box.rejected() == 1


def test_reopening_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with Outbox(path) as box:
        box.put(report(1))
        box.put(report(2))
        box.remove("report-0001")
    with Outbox(path) as box:
        assert [p.report.id for p in box.peek(10)] == ["report-0002"]
        assert box.put(report(3))
        assert [p.report.id for p in box.peek(10)] == ["report-0002", "report-0003"]


def _writer(path: Path, how: str) -> subprocess.CompletedProcess[str]:
    """Put reports in a child process that then dies without closing the outbox."""
    code = textwrap.dedent(
        f"""
        import os, signal, sys
        from agent.outbox import Outbox
        from tests.support.agentfakes import report
        box = Outbox({str(path)!r})
        for n in range(50):
            box.put(report(n))
        box.remove("report-0000")
        print("written", flush=True)
        if {how!r} == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(0)
        """
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_reports_survive_an_abrupt_end_of_the_process(tmp_path: Path, how: str) -> None:
    path = tmp_path / "o.sqlite"
    done = _writer(path, how)
    assert "written" in done.stdout, done.stderr
    if how == "kill":
        assert done.returncode == -signal.SIGKILL
    assert Path(f"{path}-wal").exists()  # the process never checkpointed
    with Outbox(path) as box:
        ids = [p.report.id for p in box.peek(100)]
    assert ids == [f"report-{n:04d}" for n in range(1, 50)]


def test_the_outbox_uses_wal_and_full_sync(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as box:
        assert box._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert box._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_second_reader_sees_the_queue(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with Outbox(path) as writer, Outbox(path) as reader:
        writer.put(report(1))
        assert reader.pending() == 1


def test_an_outbox_from_a_newer_agent_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StateDirUnusable, match="newer agent"):
        Outbox(path)


def test_an_outbox_that_cannot_be_opened_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StateDirUnusable):
        Outbox(tmp_path / "file" / "o.sqlite")


def _start(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_processes_delivering_from_one_outbox_keep_it_whole(tmp_path: Path) -> None:
    """`storesafe-agent run` and a local `backup-now` may both deliver from one outbox: every
    report is put once, delivered at least once, and the file stays sound."""
    path, done = tmp_path / "o.sqlite", tmp_path / "producer-done"
    producer = _start(
        f"""
        import pathlib
        from agent.outbox import Outbox
        from tests.support.agentfakes import report
        with Outbox(pathlib.Path({str(path)!r})) as box:
            for n in range(200):
                box.put(report(n))
        pathlib.Path({str(done)!r}).touch()
        """
    )
    consumer = f"""
        import pathlib
        from agent.outbox import Outbox
        done = pathlib.Path({str(done)!r})
        with Outbox(pathlib.Path({str(path)!r})) as box:
            while True:
                item = box.oldest()
                if item is None:
                    if done.exists() and box.pending() == 0:
                        break
                    continue
                box.record_failure(item.report.id, "a first try failed")
                if item.report.id.endswith("7"):
                    box.reject(item.report.id, "refused for good")
                else:
                    box.remove(item.report.id)
                print(item.report.id, flush=True)
        """
    consumers = [_start(consumer) for _ in range(2)]
    assert producer.wait(timeout=120) == 0, producer.stderr.read() if producer.stderr else ""
    seen: set[str] = set()
    for proc in consumers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        seen.update(out.split())
    assert seen == {f"report-{n:04d}" for n in range(200)}
    with Outbox(path) as box:
        assert box.pending() == 0
        assert box.rejected() == 20
        assert box._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
