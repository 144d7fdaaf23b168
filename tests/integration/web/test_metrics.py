"""`/metrics` and `/healthz` of a real server after real agent traffic, parsed as Prometheus does."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from storesafe.v1 import admin_pb2

from tests.support.server import BIN, ServerHandle, free_port, init_server, set_config
from tests.support.simagent import SimAgent, SimSession, close_all, enroll_many, next_config
from tests.support.web import WebServer, backup_report, check_in, report, start_web_server


def scrape(web: WebServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by (name, sorted labels)."""
    answer = web.get("/metrics")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_metrics_count_real_check_ins_reports_streams_and_rollout(web: WebServer) -> None:
    h = web.handle
    before = scrape(web)
    assert value(before, "storesafe_checkins_total") == 0
    assert value(before, "storesafe_agent_streams") == 0
    for channel in ("webhook", "slack", "teams", "email"):  # alerting's series exist at zero
        assert value(before, "storesafe_alert_deliveries_total", channel=channel) == 0
        assert value(before, "storesafe_alert_failures_total", channel=channel) == 0
    now = dt.datetime.now(dt.UTC)

    async def traffic() -> tuple[SimSession, list[SimAgent]]:
        agents = await enroll_many(
            h.address, h.ca_path.read_bytes(), h.admin_token, ["m-ok", "m-failing", "m-never"]
        )
        ok, failing, never = agents
        for agent in agents:
            await check_in(agent)
        await check_in(ok)
        good = backup_report(now - dt.timedelta(minutes=5))
        assert await report(ok, good) is False
        assert await report(ok, good) is True  # a replay
        assert await report(failing, backup_report(now - dt.timedelta(hours=1))) is False
        assert await report(failing, backup_report(now, good=False, error="disk full")) is False
        backwards = backup_report(now)
        backwards.started_at.FromDatetime(now + dt.timedelta(minutes=1))
        with pytest.raises(grpc.RpcError) as err:
            await report(failing, backwards)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        return SimSession(never), agents

    async def run() -> None:
        session, agents = await traffic()
        await asyncio.to_thread(_wait_for, web, "storesafe_agent_streams", 1)
        samples = scrape(web)
        assert value(samples, "storesafe_checkins_total") == 4
        assert value(samples, "storesafe_reports_total", result="stored") == 3
        assert value(samples, "storesafe_reports_total", result="replay") == 1
        assert value(samples, "storesafe_reports_total", result="refused") == 1
        assert value(samples, "storesafe_report_ingest_seconds_count") == 4
        assert value(samples, "storesafe_report_ingest_seconds_sum") > 0
        assert value(samples, "storesafe_report_ingest_seconds_bucket", le="+Inf") == 4
        assert value(samples, "storesafe_sites", status="ok") == 1
        assert value(samples, "storesafe_sites", status="failing") == 1
        assert value(samples, "storesafe_sites", status="never") == 1
        assert value(samples, "storesafe_sites", status="offline") == 0
        assert value(samples, "storesafe_agent_streams") == 1
        assert value(samples, "storesafe_config_rollout_lag_sites") == 0

        set_config(h, admin_pb2.CONFIG_SCOPE_FLEET, backup__keep_daily="9")
        pushed = await next_config(session)
        samples = scrape(web)
        assert value(samples, "storesafe_config_revision") == pushed.revision
        assert value(samples, "storesafe_config_rollout_lag_sites") == 3  # nobody applied it
        session.ack(pushed.revision)
        await asyncio.to_thread(_wait_for, web, "storesafe_config_rollout_lag_sites", 2)
        session.cancel()
        await close_all([a.channel for a in agents])

    asyncio.run(run())
    # The stream's end is seen by the server: the gauge goes back to zero.
    _wait_for(web, "storesafe_agent_streams", 0)


def _wait_for(web: WebServer, name: str, expected: float, attempts: int = 200) -> None:
    """Scrape until `name` shows `expected` (each scrape is a real round trip)."""
    seen = None
    for _ in range(attempts):
        seen = value(scrape(web), name)
        if seen == expected:
            return
    raise AssertionError(f"{name} stayed at {seen}, expected {expected}")


def test_healthz_answers_200_when_grpc_the_database_and_the_store_answer(web: WebServer) -> None:
    answer = web.get("/healthz")
    assert answer.status == 200
    assert json.loads(answer.body) == {
        "status": "ok",
        "checks": {"grpc": "ok", "database": "ok", "store": "ok"},
    }
    assert answer.headers["Content-Type"].startswith("application/json")


@pytest.mark.postgres
def test_healthz_answers_503_naming_the_database_when_it_is_gone(
    tmp_path: Path, pg_url: str
) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    web = start_web_server(tmp_path, db_url=pg_url)
    try:
        assert web.get("/healthz").status == 200
        url = make_url(pg_url)
        admin = url.set(drivername="postgresql", database="postgres")
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as c:
            c.execute(f'DROP DATABASE "{url.database}" WITH (FORCE)')
        answer = web.get("/healthz")
        assert answer.status == 503
        body = json.loads(answer.body)
        assert body["status"] == "unavailable"
        assert body["checks"]["grpc"] == "ok"
        assert body["checks"]["database"].startswith("failed")
    finally:
        web.handle.stop()


def _serve_fails(h: ServerHandle, *args: str) -> str:
    out = subprocess.run(
        [
            str(BIN / "storesafe-server"),
            "serve",
            "--data-dir",
            str(h.data_dir),
            "--listen",
            f"127.0.0.1:{free_port()}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    return out.stderr.strip().splitlines()[-1]


def test_plaintext_http_is_refused_off_loopback(tmp_path: Path) -> None:
    h = init_server(tmp_path)
    last = _serve_fails(h, "--insecure", "--http-listen", f"0.0.0.0:{free_port()}")
    assert last == "error: plaintext (--insecure) HTTP is allowed only on a loopback address"


def test_a_bad_or_busy_http_address_is_one_clear_sentence(tmp_path: Path) -> None:
    h = init_server(tmp_path)
    last = _serve_fails(h, "--http-listen", "nonsense")
    assert last == "error: --http-listen 'nonsense' must be HOST:PORT"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        last = _serve_fails(h, "--http-listen", f"127.0.0.1:{port}")
    assert last == f"error: cannot listen for HTTP on 127.0.0.1:{port}: is the port in use?"


def test_insecure_serves_plain_http_on_loopback_without_a_secure_cookie(tmp_path: Path) -> None:
    h = init_server(tmp_path)
    http_port = free_port()
    log = (tmp_path / "insecure.log").open("ab")
    proc = subprocess.Popen(
        [
            str(BIN / "storesafe-server"),
            "serve",
            "--data-dir",
            str(h.data_dir),
            "--listen",
            h.address,
            "--insecure",
            "--http-listen",
            f"127.0.0.1:{http_port}",
        ],
        stdout=log,
        stderr=log,
    )
    try:
        base = f"http://127.0.0.1:{http_port}"
        health = _wait_for_http(base + "/healthz", proc)
        assert json.loads(health)["checks"] == {"grpc": "ok", "database": "ok", "store": "ok"}
        form = urllib.parse.urlencode({"token": h.admin_token}).encode()
        request = urllib.request.Request(base + "/login", data=form, method="POST")
        opener = urllib.request.build_opener(_NoRedirect())
        try:
            opener.open(request, timeout=30)
            raise AssertionError("sign-in did not redirect")
        except urllib.error.HTTPError as err:
            assert err.code == 303
            cookie = err.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "Secure" not in cookie  # a browser would drop a Secure cookie over plain HTTP
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _wait_for_http(url: str, proc: subprocess.Popen[bytes], attempts: int = 600) -> bytes:
    """GET `url` once the server listens (each failed attempt is a refused connection,
    bounded by 0.1 s), or fail when the server exits."""
    for _ in range(attempts):
        assert proc.poll() is None, "the server exited"
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                return bytes(reply.read())
        except urllib.error.URLError:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.1)
    raise AssertionError(f"{url} never answered")
