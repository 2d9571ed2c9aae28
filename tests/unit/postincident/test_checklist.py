"""The post-incident checklist without services: the post_incident: section's validation, the meeting's
slot, Retry-After, and `smartops learn`'s bad input (tests/scenarios/test_post_incident.py talks to the
loopback services and the SMTP server)."""
from __future__ import annotations

import datetime as dt
import email.utils
import zoneinfo

import pytest

from smartops_nb.params import ParameterError
from smartops_nb.postincident import config, http, mail
from smartops_nb.records.checklist_store import Store
from smartops_nb.records.archive import open_archive
from tests.fixtures.archives import cli, write  # noqa: F401  (cli: a fixture)


def test_an_http_date_retry_after_is_honoured():
    later = email.utils.format_datetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30), usegmt=True)
    assert 25 <= http.retry_after(later) <= 31 and http.retry_after("7") == 7 and http.retry_after("soon") is None


@pytest.mark.parametrize("section, says", [
    ("nope", "'post_incident' must be a mapping"),
    ({"jira": {"url": "https://x.example"}}, "post_incident jira needs email"),
    ({"statuspage": {"page_id": "p", "api_key": "k", "colour": 1}}, "unknown post_incident statuspage setting 'colour'"),
    ({"meeting": {"timezone": "Mars/Olympus"}, "smtp": {"host": "h", "sender": "a@b.example"}}, "not an IANA"),
    ({"meeting": {}}, "meeting needs smtp"),
    ({"stakeholders": {"to": ["not-an-address"]}, "smtp": {"host": "h", "sender": "a@b.example"}},
     "list of e-mail addresses"),
    ({"github": {"repo": "no-slash", "token": "t"}}, "OWNER/NAME"),
    ({"total_s": 0}, "total_s must be"),
])
def test_a_malformed_section_is_one_line_of_bad_input(section, says):
    with pytest.raises(ParameterError, match=says):
        config.load({"post_incident": section})


def test_the_meeting_slot_keeps_to_48_hours_over_a_weekend():
    meeting = config.load({"post_incident": {"meeting": {"timezone": "Europe/Berlin"},
                                             "smtp": {"host": "h", "sender": "a@b.example"}}})["meeting"]
    friday_evening = dt.datetime(2026, 12, 4, 18, 0, tzinfo=dt.timezone.utc)
    start = mail.slot(friday_evening, friday_evening, meeting)
    local = start.astimezone(zoneinfo.ZoneInfo("Europe/Berlin"))
    assert local.weekday() == 5 and local.hour == 9  # Saturday 09:00: the seed's 48 h win over the weekend
    tuesday = dt.datetime(2026, 12, 1, 10, 30, tzinfo=dt.timezone.utc)
    local = mail.slot(tuesday, tuesday, meeting).astimezone(zoneinfo.ZoneInfo("Europe/Berlin"))
    assert (local.weekday(), local.hour) == (1, 13)  # the first whole working hour an hour from now


def test_learn_refuses_bad_input_and_keeps_nothing(archive, cli):
    write(archive, causes=("idle-connection-leak",), incident_id="INC-9")
    for args, says in [(["INC-404", "text"], "no record of incident"), (["INC-9", "   "], "needs some text"),
                       (["INC-9", "x", "--runbook", "nope"], "unknown runbook"),
                       (["INC-9", "x" * 2001], "at most 2000")]:
        out = cli("learn", *args, "--archive", str(archive))
        assert out.returncode == 2 and says in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert Store(open_archive(archive)).lessons(runbook="db-pool-exhausted") == []


def test_the_readme_example_is_a_valid_section():
    import re

    import yaml

    from tests.conftest import REPO

    readme = (REPO / "README.md").read_text()
    part = readme[readme.index("## After the incident"):]
    block = re.search(r"```yaml\n(.*?)```", part, re.S)[1]
    cfg = config.load(yaml.safe_load(block))
    assert {"statuspage", "jira", "smtp", "meeting", "stakeholders"} <= set(cfg)
    assert cfg["jira"]["api_token"] == "env:JIRA_API_TOKEN"  # a reference, resolved only at use
