"""Alert to record, end to end, with real processes and the shipped configuration.

The session's sandbox gets the ``slow-queries`` fault (searches take seconds). Debian's Prometheus
scrapes its API every second and evaluates ``deploy/prometheus/rules.yml`` every second (a copy
whose ``for:`` is 0s: the test cannot wait a minute); Debian's Alertmanager, configured from
``deploy/prometheus/alertmanager.yml`` (bearer token from a file, short group_wait), sends the
``HighAPILatency`` notification to a real ``smartops serve`` process using the shipped
``parameters/routes.yaml``. The test waits (bounded) for the record in the archive and checks
that it is the alert's incident, diagnosed ``slow-queries``, with the Prometheus history in it.
"""
from __future__ import annotations

import json
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import nbformat
import yaml

from smartops_nb.alerts.routes import episode_stamp
from smartops_nb.waiting import until
from tests.conftest import REPO, free_port, require
from tests.fixtures.monitoring import (
    ALERTMANAGER,
    PROMETHEUS,
    alertmanager_config,
    rules_with_for,
    start_alertmanager,
    start_prometheus,
    start_serve,
)

WAIT_S = 150
TOKEN = "e2e-" + "x" * 28


def _records(archive: Path) -> list[dict]:
    out = []
    for p in sorted(archive.glob("**/*.ipynb")):
        try:
            meta = nbformat.read(p, as_version=4).metadata.get("smartops", {})
        except Exception:   # being written
            continue
        if meta:
            out.append({**meta, "_path": str(p)})
    return out


def _alerts(am_url: str) -> list[dict]:
    with urllib.request.urlopen(am_url + "/api/v2/alerts", timeout=5) as r:
        return json.loads(r.read())


@contextmanager
def chain(tmp_path, sandbox, base_params: dict):
    """serve (the shipped routes), Alertmanager (the shipped config, short waits) and Prometheus (the
    shipped rules, ``for: 0s``) scraping the sandbox; yields (serve, alertmanager); stops them by pid."""
    require("prometheus", bool(PROMETHEUS), "apt-get install prometheus")
    require("alertmanager", bool(ALERTMANAGER), "apt-get install prometheus-alertmanager")
    procs = []
    try:
        # serve first: the webhook must be there when the first notification goes out
        prom_port = free_port()
        token_file = tmp_path / "serve.token"
        token_file.write_text(TOKEN)
        token_file.chmod(0o600)
        base = tmp_path / "base.yaml"   # what every run gets: the sandbox, Prometheus
        base.write_text(yaml.safe_dump({**base_params, "prometheus_url": f"http://127.0.0.1:{prom_port}",
                                        "lookback": "5m"}))
        serve = start_serve(tmp_path / "serve", REPO / "parameters" / "routes.yaml", tmp_path / "incidents", TOKEN,
                            files=[base], extra=["--cell-timeout", "120"])
        procs.append(serve)
        config = alertmanager_config(serve.url + "/alerts", token_file)
        # the shipped inhibition (APIDown silences HighAPILatency) is Alertmanager's to apply: on a loaded
        # machine the slow-queries fault also answers > 50% 5xx for a moment, and with `for: 0s` APIDown
        # then silenced the very alert this test follows
        config.pop("inhibit_rules", None)
        am = start_alertmanager(tmp_path / "alertmanager", config)
        procs.append(am)
        procs.append(start_prometheus(tmp_path / "prometheus", f"127.0.0.1:{sandbox.api_port}",
                                      rules=rules_with_for(tmp_path / "rules.yml", "0s"),
                                      alertmanager=am.url.removeprefix("http://"), port=prom_port))
        yield serve, am
    finally:
        for p in reversed(procs):
            p.stop()


def _wait_record(archive: Path, serve, am, what: str, match) -> dict | None:
    found = until(lambda: next((r for r in _records(archive) if match(r)), None), WAIT_S, 1.0)
    assert found, (f"no {what} record within {WAIT_S}s; alerts: {_safe(_alerts, am.url)}\n"
                   f"--- serve log:\n{serve.tail()}\n--- alertmanager log:\n{am.tail(15)}")
    return found


def _episode(alert: dict) -> str:
    return f"{alert['labels']['alertname']}-{alert['fingerprint']}-{episode_stamp(alert['startsAt'])}"


def test_high_latency_alert_becomes_a_record(healthy_sandbox, sandbox_params, tmp_path):
    archive = tmp_path / "incidents"
    with chain(tmp_path, healthy_sandbox, {**sandbox_params, "sample_seconds": 3.0, "sample_interval": 1.0}) as (serve, am):
        healthy_sandbox.fault("slow-queries")
        found = _wait_record(archive, serve, am, "high-latency", lambda r: r.get("runbook") == "high-latency"
                             and r.get("incident_id", "").startswith("HighAPILatency-") and r.get("status") == "completed")

        firing = [a for a in _alerts(am.url) if a["labels"]["alertname"] == "HighAPILatency"]
        by_episode = {_episode(a): a for a in firing}
        assert found["incident_id"] in by_episode, (found["incident_id"], list(by_episode))
        alert = by_episode[found["incident_id"]]
        assert found["detected_at"][:19] == alert["startsAt"][:19]
        assert found["runbook"] == alert["labels"]["runbook"] == "high-latency"
        assert found["severity"] == alert["labels"]["severity"] == "P2" and found["environment"] == "sandbox"
        assert "slow-queries" in found["diagnosis"]["causes"], found["diagnosis"]
        history = next(f for f in found["findings"] if f["check"] == "prometheus-history")
        assert history["status"] != "error" and history["data"]["prometheus"], history
        assert [a["mode"] for a in found["actions"] if a["action"] == "create-index"] == ["recommended"]


def _safe(fn, *args):
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - only for the failure message
        return repr(e)
