"""ServerMetrics: one registry per server, hooks, and the fleet gauges set at scrape."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from server.metrics import FleetFigures, ServerMetrics


def samples(m: ServerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_two_servers_in_one_process_keep_their_own_figures() -> None:
    a, b = ServerMetrics(["ok"]), ServerMetrics(["ok"])
    a.checked_in()
    a.alert_delivered("slack")
    a.alert_failed("webhook")
    a.alert_failed("webhook")
    b.report_received("stored", 0.02)
    sa, sb = samples(a), samples(b)
    assert sa[("storesafe_checkins_total", ())] == 1
    assert sb[("storesafe_checkins_total", ())] == 0
    assert sa[("storesafe_alert_deliveries_total", (("channel", "slack"),))] == 1
    assert sa[("storesafe_alert_failures_total", (("channel", "webhook"),))] == 2
    assert sb[("storesafe_report_ingest_seconds_count", ())] == 1
    assert sb[("storesafe_report_ingest_seconds_bucket", (("le", "0.025"),))] == 1
    assert sb[("storesafe_report_ingest_seconds_bucket", (("le", "0.01"),))] == 0


def test_refused_reports_are_counted_but_not_timed() -> None:
    m = ServerMetrics()
    m.report_received("refused", 0.0)
    s = samples(m)
    assert s[("storesafe_reports_total", (("result", "refused"),))] == 1
    assert s[("storesafe_report_ingest_seconds_count", ())] == 0


def test_fleet_gauges_follow_each_scrape() -> None:
    m = ServerMetrics(["ok", "stale"])
    m.observe_fleet(FleetFigures({"ok": 3, "stale": 1}, 2, 1, 7))
    m.observe_fleet(FleetFigures({"ok": 4}, 0, 0, 8))
    s = samples(m)
    assert s[("storesafe_sites", (("status", "ok"),))] == 4
    assert s[("storesafe_sites", (("status", "stale"),))] == 0  # gone back to zero
    assert s[("storesafe_agent_streams", ())] == 0
    assert s[("storesafe_config_rollout_lag_sites", ())] == 0
    assert s[("storesafe_config_revision", ())] == 8
