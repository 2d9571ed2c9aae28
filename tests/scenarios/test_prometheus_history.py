"""Prometheus history: the probe against a real Prometheus scraping the sandbox, the shipped rules
and configs validated by Prometheus's own tools, and the runbooks' history step with and without it."""
from __future__ import annotations

import datetime as dt
import subprocess
import time

import pytest
import yaml

from smartops_nb.checks import history
from smartops_nb.probes import prometheus
from tests.conftest import free_port, require, run_runbook
from tests.fixtures.monitoring import (
    AMTOOL,
    DEPLOY,
    PROMETHEUS,
    PROMTOOL,
    start_prometheus,
)

FAST = {"sample_seconds": 2.0, "sample_interval": 1.0}


@pytest.fixture(scope="module")
def prom(sandbox, tmp_path_factory):
    """Debian's Prometheus scraping the session's sandbox API every second (with ~8 s of data)."""
    require("prometheus", bool(PROMETHEUS), "apt-get install prometheus")
    p = start_prometheus(tmp_path_factory.mktemp("prometheus"), f"127.0.0.1:{sandbox.api_port}")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not prometheus.query(p.url, 'up{job="smartamazon-api"} == 1'):
            time.sleep(0.5)
        time.sleep(6)   # a few scrapes, so that rate(...[1m]) has two points
        yield p
    finally:
        p.stop()


# -- the shipped files ----------------------------------------------------------------------------
def test_rules_every_alert_names_a_runbook_and_has_annotations():
    from smartops_nb import catalog

    groups = yaml.safe_load((DEPLOY / "rules.yml").read_text())["groups"]
    alerts = {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}
    assert {"HighAPILatency", "APIDown", "PostgresConnectionsNearLimit", "RedisMemoryNearLimit"} <= set(alerts)
    for name, r in alerts.items():
        assert r["labels"]["severity"] in ("P1", "P2", "P3", "P4"), name
        assert r["labels"]["runbook"] in catalog.RUNBOOKS, name
        assert r["annotations"]["summary"] and r["annotations"]["description"], name
    assert alerts["HighAPILatency"]["for"] == "1m" and "> 2" in alerts["HighAPILatency"]["expr"]


def test_promtool_accepts_rules_and_config():
    require("promtool", bool(PROMTOOL), "apt-get install prometheus")
    for args in (["check", "rules", "rules.yml"], ["check", "config", "prometheus.yml"]):
        out = subprocess.run([PROMTOOL, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_rule_unit_tests_pass():
    require("promtool", bool(PROMTOOL), "apt-get install prometheus")
    out = subprocess.run([PROMTOOL, "test", "rules", "rules_test.yml"], cwd=DEPLOY, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_amtool_accepts_alertmanager_config():
    require("amtool", bool(AMTOOL), "apt-get install prometheus-alertmanager")
    out = subprocess.run([AMTOOL, "check-config", "alertmanager.yml"], cwd=DEPLOY, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    hook = yaml.safe_load((DEPLOY / "alertmanager.yml").read_text())["receivers"][0]["webhook_configs"][0]
    assert hook["send_resolved"] is True and hook["url"].endswith("/alerts")
    assert hook["http_config"]["authorization"]["credentials_file"]


# -- the probe ------------------------------------------------------------------------------------
def test_unreachable_prometheus_is_a_one_line_error():
    with pytest.raises(prometheus.PrometheusError, match="unreachable") as e:
        prometheus.query(f"http://127.0.0.1:{free_port()}", "up", timeout=2)
    assert "\n" not in str(e.value)


def test_durations_and_window():
    assert prometheus.parse_duration("30m") == 1800 and prometheus.parse_duration("1h30m") == 5400
    with pytest.raises(ValueError):
        prometheus.parse_duration("soon")
    now = dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc)
    assert prometheus.window("2026-01-01T11:50:00Z", "30m", now) == (now - dt.timedelta(minutes=30), now)
    start, _ = prometheus.window("2026-01-01T10:00:00Z", "30m", now)   # an older alert stays on the chart
    assert start == dt.datetime(2026, 1, 1, 9, 57, tzinfo=dt.timezone.utc)
    assert prometheus.history_or_none("", "2026-01-01T10:00:00Z", "30m") is None


def test_no_prometheus_is_an_ok_finding_not_an_error():
    f = history.check_history(None)
    assert f.status == "ok" and f.summary == history.NO_PROMETHEUS


def test_bad_query_is_prometheus_own_reason(prom):
    with pytest.raises(prometheus.PrometheusError, match="HTTP 400.*parse error"):
        prometheus.query(prom.url, "sum(")


def test_history_from_real_prometheus(prom, healthy_sandbox):
    import urllib.request
    for n in (1, 10):   # a new series' first value is no increase: create it, then add to it
        for _ in range(n):
            urllib.request.urlopen(healthy_sandbox.api_url + "/api/categories", timeout=5).read()
        time.sleep(2.5)
    end = dt.datetime.now(dt.timezone.utc)
    frames = prometheus.api_history(prom.url, end - dt.timedelta(minutes=5), end)
    assert "/metrics" not in frames["request_rate"].columns        # the scrapes are not user traffic
    assert frames["request_rate"]["/api/categories"].max() > 0
    assert "/api/categories" in frames["p95"].columns
    assert frames["db_max_connections"]["value"].dropna().iloc[-1] == 60
    assert frames["db_connections"].drop(columns="at").sum(axis=1).max() >= 1
    assert frames["pool_size"]["value"].dropna().iloc[-1] == healthy_sandbox.pool_size
    f = history.check_history(frames)
    assert f.data["prometheus"] and f.data["db_max_connections"] == 60


def test_high_latency_plots_prometheus_history(prom, healthy_sandbox, sandbox_params, archive):
    rec = run_runbook("high-latency", archive, {**sandbox_params, **FAST, "prometheus_url": prom.url,
                                                "lookback": "5m"})
    f = rec.finding("prometheus-history")
    assert f["status"] in ("ok", "warn") and f["data"]["prometheus"], f
    assert f["data"]["db_max_connections"] == 60
    cell = next(c for c in rec.nb.cells if "prometheus.history_or_none" in c.source)
    assert sum(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for o in cell.outputs) == 3     # latency, traffic, connections
    assert not [x for x in rec.summary["findings"] if x["status"] == "error"]


def test_without_prometheus_the_step_says_it_sampled_metrics(healthy_sandbox, sandbox_params, archive):
    rec = run_runbook("db-pool-exhausted", archive, {**sandbox_params})
    f = rec.finding("prometheus-history")
    assert f["status"] == "ok" and f["summary"] == history.NO_PROMETHEUS
