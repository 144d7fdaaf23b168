"""Alerting inside a real `storesafe-server`: a hanging webhook never delays a check-in,
`storesafe alerts` lists deliveries and failures without secrets, and agents never
receive the alert keys."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from storesafe.v1 import admin_pb2
from typer.testing import CliRunner

from cli.main import app
from tests.support.alerts import WebhookReceiver
from tests.support.server import free_port, set_config, start_server
from tests.support.simagent import SimSession, close_all, enroll_many, next_config

SECRET = "T0001/B0002/sekrit-path-token"


def test_a_hanging_webhook_never_delays_ingest_and_failures_are_listed(tmp_path: Path) -> None:
    handle = start_server(tmp_path, extra_args=("--alert-interval", "0.2"))
    try:
        asyncio.run(_scenario(handle))
    finally:
        code = handle.stop()
    assert code == 0, handle.log()  # the alert tasks stop cleanly on SIGTERM
    assert SECRET not in handle.log()


async def _scenario(handle) -> None:  # type: ignore[no-untyped-def]
    hook = WebhookReceiver()
    await hook.start()
    hook.modes["/hang"] = "hang"
    dead = free_port()
    set_config(
        handle,
        admin_pb2.CONFIG_SCOPE_FLEET,
        alerts__webhook_url=hook.url("/hang"),
        alerts__slack_url=f"http://127.0.0.1:{dead}/services/{SECRET}",
        alerts__digest_time="",
    )
    [agent] = await enroll_many(
        handle.address, handle.ca_path.read_bytes(), handle.admin_token, ["shop-a"]
    )
    try:
        # the new site has no verified backup: ok -> never; the webhook takes it and hangs
        await hook.wait_until(lambda: hook.hanging == 1, timeout=30)
        reply = await agent.check_in()  # completes while the endpoint hangs
        assert reply.checkin_interval_seconds > 0
        assert hook.hanging == 1 and hook.hits == []

        # agents get the configuration without any alerts.* key
        session = SimSession(agent)
        update = await next_config(session)
        session.cancel()
        assert update.values and not [k for k in update.values if k.startswith("alerts.")]

        hook.release.set()
        await hook.wait_until(lambda: len(hook.delivered("/hang")) == 1, timeout=30)
        body = hook.delivered("/hang")[0]
        assert (body["event"], body["site"], body["previous"], body["status"]) == (
            "transition",
            "shop-a",
            "ok",
            "never",
        )
        listed = await asyncio.to_thread(_alerts_until_settled, handle)
    finally:
        await close_all([agent.channel])
        await hook.stop()
    by_channel = {d["channel"]: d for d in listed["deliveries"]}
    webhook, slack = by_channel["webhook"], by_channel["slack"]
    assert (webhook["site"], webhook["kind"], webhook["status_to"]) == (
        "shop-a",
        "transition",
        "never",
    )
    assert (webhook["state"], webhook["destination"]) == ("delivered", f"127.0.0.1:{hook.port}")
    assert slack["state"] == "pending" and slack["attempts"] >= 1
    assert slack["destination"] == f"127.0.0.1:{dead}"
    assert slack["last_error"] == f"cannot connect to 127.0.0.1:{dead}: Connection refused"
    assert listed["totals"]["delivered"] == 1 and listed["totals"]["errors"] >= 1

    text = CliRunner().invoke(app, ["alerts", "--site", "shop-a"], env=handle.cli_env)
    assert text.exit_code == 0, text.output
    assert "ok->never" in text.stdout and "Connection refused" in text.stdout
    assert SECRET not in text.stdout
    bad = CliRunner().invoke(app, ["alerts", "--limit", "0"], env=handle.cli_env)
    assert bad.exit_code == 2
    assert "a limit of 0 is out of range" in bad.stderr


def _alerts_until_settled(handle) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """`storesafe alerts --json` once the webhook delivery is recorded as delivered."""
    deadline = time.monotonic() + 30
    while True:
        result = CliRunner().invoke(app, ["alerts", "--json"], env=handle.cli_env)
        assert result.exit_code == 0, result.output
        assert SECRET not in result.stdout
        found: dict = json.loads(result.stdout)  # type: ignore[type-arg]
        states = {d["channel"]: d["state"] for d in found["deliveries"]}
        if states.get("webhook") == "delivered" and "slack" in states:
            return found
        assert time.monotonic() < deadline, f"not settled: {found}"
        time.sleep(0.2)
