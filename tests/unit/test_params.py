"""Parameter merging, typing and env: references (pure functions, no services)."""
from __future__ import annotations

import pytest

from smartops_nb import redact
from smartops_nb.params import (
    ParameterError,
    Params,
    check_types,
    check_values,
    load_yaml_files,
    parse_cli_value,
    parse_time,
)


def test_later_files_win(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("mode: investigate\nidle_minutes: 5\n")
    b.write_text("idle_minutes: 2\n")
    assert load_yaml_files([a, b]) == {"mode": "investigate", "idle_minutes": 2}


def test_yaml_that_is_not_a_mapping_is_refused(tmp_path):
    f = tmp_path / "list.yaml"
    f.write_text("- a\n- b\n")
    with pytest.raises(ParameterError, match="must be a mapping"):
        load_yaml_files([f])


@pytest.mark.parametrize("raw, value", [("5", 5), ("2.5", 2.5), ("true", True), ("[a, b]", ["a", "b"]),
                                        ("plain", "plain"), ("2026-11-26T14:00:00Z", "2026-11-26T14:00:00Z"),
                                        ("", "")])
def test_cli_values_are_typed_like_papermill(raw, value):
    assert parse_cli_value(raw) == value


def test_types_are_checked_against_the_notebook_defaults():
    defaults = {"idle_minutes": 5.0, "approved_actions": [], "dry_run": False, "environment": "x"}
    check_types({"idle_minutes": 3, "approved_actions": "a,b", "dry_run": True}, defaults)
    with pytest.raises(ParameterError, match="must be bool"):
        check_types({"dry_run": 1}, defaults)
    with pytest.raises(ParameterError, match="must be float"):
        check_types({"idle_minutes": True}, defaults)
    with pytest.raises(ParameterError, match="unknown parameter 'nope'"):
        check_types({"nope": 1}, defaults)


def test_values_are_checked():
    check_values({"platform": "kubernetes", "mode": "mitigate", "severity": "P2",
                  "detected_at": "2026-11-26T14:03:12Z", "approved_actions": ["a"]}, actions=["a"])
    with pytest.raises(ParameterError, match="platform"):
        check_values({"platform": "nomad"})
    with pytest.raises(ParameterError, match="severity"):
        check_values({"severity": "P0"})


def test_naive_times_are_utc():
    assert parse_time("2026-11-26T14:03:12").isoformat() == "2026-11-26T14:03:12+00:00"


def test_env_references_resolve_inside_the_run_and_are_registered_as_secrets(monkeypatch):
    monkeypatch.setenv("SMARTOPS_T_PW", "s3cr3t-value-xyz")
    p = Params({"postgres_dsn": "env:SMARTOPS_T_PW", "approved_actions": "a, b"})
    assert p.postgres_dsn == "s3cr3t-value-xyz"
    assert p.raw()["postgres_dsn"] == "env:SMARTOPS_T_PW"
    assert p.approved_actions == ["a", "b"]
    assert "s3cr3t-value-xyz" not in redact.scrub("dsn is s3cr3t-value-xyz")
    with pytest.raises(ParameterError, match="SMARTOPS_T_MISSING"):
        Params({"x": "env:SMARTOPS_T_MISSING"}).x


def test_urls_and_env_are_masked():
    assert redact.mask_url("postgresql://u:pw123@h:5/db") == "postgresql://u:******@h:5/db"
    assert redact.mask_url("host=h password=pw123 dbname=d") == "host=h password=****** dbname=d"
    masked = redact.mask_env({"DB_PASSWORD": "hunter22", "API_TOKEN": "tok-123456", "LOG_LEVEL": "info",
                              "DATABASE_URL": "postgresql://a:b-secret@h/d"})
    assert masked == {"DB_PASSWORD": "******", "API_TOKEN": "******", "LOG_LEVEL": "info",
                      "DATABASE_URL": "postgresql://a:******@h/d"}
    assert "hunter22" not in redact.scrub("log line hunter22")
