"""`smartops` as automation sees it: exit codes, one-line errors, the record path last on stdout."""
from __future__ import annotations

import json

import pytest

from tests.fixtures.archives import smartops


def test_every_command_has_help():
    for cmd in ([], ["runbooks"], ["run"], ["sandbox"], ["sandbox", "up"], ["sandbox", "fault"],
                ["sandbox", "status"], ["sandbox", "heal"], ["sandbox", "down"]):
        out = smartops(*cmd, "--help")
        assert out.returncode == 0 and "usage: smartops" in out.stdout, cmd


def test_runbooks_lists_ids_severities_and_parameters():
    out = smartops("runbooks", "--json")
    rows = {r["id"]: r for r in json.loads(out.stdout)}
    assert {"api-down", "high-latency", "db-pool-exhausted", "disk-full", "redis-memory-full",
            "failed-deployment"} == set(rows)
    db = rows["db-pool-exhausted"]
    assert db["severity"] == "P1" and db["parameters"]["idle_minutes"] == 5.0
    assert db["parameters"]["connections_warn_pct"] == 90.0 and db["parameters"]["mode"] == "investigate"


@pytest.mark.parametrize("args, needle", [
    (["run", "no-such-runbook"], "unknown runbook 'no-such-runbook'"),
    (["run", "db-pool-exhausted", "-p", "no_such_param", "1"], "unknown parameter 'no_such_param'"),
    (["run", "db-pool-exhausted", "-p", "idle_minutes", "soon"], "parameter 'idle_minutes' must be float"),
    (["run", "db-pool-exhausted", "-p", "mode", "yolo"], "parameter 'mode' must be one of"),
    (["run", "db-pool-exhausted", "-p", "approved_actions", "[drop-database]"], "approved action 'drop-database'"),
    (["run", "db-pool-exhausted", "-p", "detected_at", "yesterday"], "must be an ISO 8601 time"),
    (["run", "db-pool-exhausted", "-f", "BAD_YAML"], "is not valid YAML"),
    (["run", "db-pool-exhausted", "-f", "/nonexistent.yaml"], "parameters file not found"),
    (["run", "db-pool-exhausted", "-f", "UNKNOWN_KEY_YAML"], "unknown parameter 'colour'"),
])
def test_bad_input_exits_2_with_one_line_and_runs_nothing(tmp_path, args, needle, cli):
    bad = tmp_path / "bad.yaml"
    bad.write_text("environment: demo\nmode: [unclosed\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("colour: blue\n")
    args = [str(bad) if a == "BAD_YAML" else str(unknown) if a == "UNKNOWN_KEY_YAML" else a for a in args]
    archive = tmp_path / "incidents"
    out = cli(*args, "--archive", str(archive))  # in-process: the command's own main()
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], out.stderr
    assert not archive.exists()  # nothing executed, no record

