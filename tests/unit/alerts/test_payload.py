"""What a webhook post may carry: bounded, valid Unicode, not too deep — refused with the limit named, before
anything is routed; and incident ids that a URL, a file name and a log line can hold."""
from __future__ import annotations

import json

import pytest

from smartops_nb.alerts import routes
from smartops_nb.alerts.routes import BadPayload, incident_id, parse_payload


def _alert(**over) -> dict:
    return {"status": "firing", "labels": {"alertname": "DBPoolExhausted", "env": "demo"}, "annotations": {},
            "fingerprint": "abc123", "startsAt": "2026-12-04T10:00:00Z", **over}


def _post(*alerts, **extra) -> bytes:
    return json.dumps({"version": "4", "alerts": list(alerts) or [_alert()], **extra}).encode()


def _refused(body: bytes) -> BadPayload:
    with pytest.raises(BadPayload) as e:
        parse_payload(body)
    return e.value


def test_a_payload_inside_every_limit_is_taken():
    big = "x" * routes.MAX_VALUE_CHARS
    labels = {"alertname": "A", **{f"l{i}": big[:100] for i in range(routes.MAX_LABELS - 1)}}
    doc = parse_payload(_post(*[_alert(fingerprint=big, labels=labels)] * 3))
    assert len(doc["alerts"]) == 3


@pytest.mark.parametrize("body, status, limit", [
    (_post(*[_alert()] * (routes.MAX_ALERTS + 1)), 413, "MAX_ALERTS = 1000"),
    (_post(_alert(labels={"alertname": "A", **{f"l{i}": "v" for i in range(routes.MAX_LABELS)}})), 413, "MAX_LABELS"),
    (_post(_alert(annotations={f"a{i}": "v" for i in range(routes.MAX_LABELS + 1)})), 413, "MAX_LABELS"),
    (_post(_alert(labels={"alertname": "A", "env": "e" * (routes.MAX_VALUE_CHARS + 1)})), 413, "MAX_VALUE_CHARS"),
    (_post(_alert(fingerprint="f" * (routes.MAX_VALUE_CHARS + 1))), 413, "MAX_VALUE_CHARS"),
    (_post(_alert(annotations={"k" * (routes.MAX_KEY_CHARS + 1): "v"})), 413, "MAX_KEY_CHARS"),
    (_post(_alert(annotations={"deep": [[[[[[[["x"]]]]]]]]})), 422, "MAX_DEPTH = 8"),
    (_post(receiver="r" * (routes.MAX_VALUE_CHARS + 1)), 413, "MAX_VALUE_CHARS"),
])
def test_past_a_limit_is_refused_naming_it(body, status, limit):
    e = _refused(body)
    assert e.status == status and limit in str(e), str(e)


def test_a_lone_surrogate_and_deep_nesting_are_400_not_a_crash():
    surrogate = b'{"version": "4", "alerts": [{"status": "firing", "labels": {"alertname": "A"}, ' \
                b'"fingerprint": "ab\\ud800cd", "startsAt": "2026-12-04T10:00:00Z"}]}'
    e = _refused(surrogate)
    assert e.status == 400 and "surrogate" in str(e)
    e = _refused(b'{"version": "4", "alerts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert e.status == 400 and "nested too deep" in str(e)
    e = _refused(b'{"version": "4", "alerts": [{"labels": {"alertname": "\xff"}}]}')  # not UTF-8
    assert e.status == 400


@pytest.mark.parametrize("fingerprint", ["a/b", "a\nb", "a b", "a\x1b[31mb", "a?b#c%2Fd", "a\\b", "a\u2028b"])
def test_incident_ids_hold_no_slash_control_or_space(fingerprint):
    iid = incident_id(_alert(fingerprint=fingerprint))
    key = routes.alert_key_of(iid)  # the episode's stamp follows the alert's key
    assert key.startswith("DBPoolExhausted-a") and key.endswith("b" if "#" not in fingerprint else "d")
    assert iid.endswith("-20261204T100000Z")
    assert not any(c in iid for c in "/\\\n\r ?#%\x1b\u2028"), iid


def test_long_incident_ids_are_cut_with_a_hash_and_stay_distinct():
    a, b = (incident_id(_alert(fingerprint="f" * 20_000 + end)) for end in ("1", "2"))
    assert len(a) == len(b) == routes.MAX_ID_CHARS and a != b
    assert routes.alert_key_of(a) != routes.alert_key_of(b)  # still the episode of one alert each
    assert incident_id(_alert()) == "DBPoolExhausted-abc123-20261204T100000Z"  # Alertmanager's ids unchanged
