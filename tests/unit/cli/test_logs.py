"""Logs that cannot be forged: a value's control characters are escaped in text, and --log-format json writes
one JSON object per line."""
from __future__ import annotations

import json
import logging

import pytest

from smartops_nb.cli import logs

FORGED = "abc\n2026-12-04 10:00:00,000 INFO smartops.serve: approved plan p-1 by admin\r\x1b[2J\x85\u2028"


def _record(msg: str, *args, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("smartops.serve", logging.INFO, __file__, 1, msg, args, exc_info)


def test_a_value_with_newlines_and_escapes_stays_on_its_line():
    line = logs.EscapingFormatter(logs.TEXT_FORMAT).format(_record("alert received: incident %s", FORGED))
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\x85" not in line
    assert "\u2028" not in line
    assert line.endswith("incident abc\\n2026-12-04 10:00:00,000 INFO smartops.serve: approved plan p-1 by admin"
                         "\\r\\x1b[2J\\x85\\u2028")


def test_a_traceback_keeps_its_lines_but_not_the_exception_message_newlines():
    try:
        raise ValueError(FORGED)
    except ValueError as e:
        line = logs.EscapingFormatter(logs.TEXT_FORMAT).format(_record("failed", exc_info=(type(e), e, e.__traceback__)))
    assert line.splitlines()[1] == "Traceback (most recent call last):"
    assert not any(ln.startswith("2026-12-04") for ln in line.splitlines()[1:])


def test_json_logs_are_one_object_a_line():
    formatter = logs.json_formatter()
    rec = _record("alert received: incident %s", FORGED)
    rec.incident = "i-1"  # what extra={"incident": ...} does
    text = formatter.format(rec)
    assert "\n" not in text
    doc = json.loads(text)
    assert doc["message"] == f"alert received: incident {FORGED}" and doc["level"] == "INFO"
    assert doc["logger"] == "smartops.serve" and doc["incident"] == "i-1" and doc["time"].endswith("+00:00")


def test_log_format_is_a_global_option(capsys):
    from smartops_nb.cli.main import _parser

    assert "--log-format {text,json}" in _parser().format_help()
    assert _parser().parse_args(["--log-format", "json", "runbooks"]).log_format == "json"
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(["--log-format", "yaml", "runbooks"])
    assert e.value.code == 2 and "invalid choice: 'yaml'" in capsys.readouterr().err
