"""The post-incident checklist against loopback services that speak each vendor's API (tests/fixtures/saas.py)
and a real SMTP server: what is created, once; retries, refusals and masked errors; the kept state."""
from __future__ import annotations

import datetime as dt
import email
import zoneinfo

import icalendar
import pytest

from smartops_nb.params import ParameterError, iso, parse_time, utcnow
from smartops_nb.postincident import checklist, config, http, mail
from smartops_nb.records.checklist_store import Store
from tests.fixtures.archives import cli, write  # noqa: F401  (cli: a fixture)
from tests.fixtures.saas import Fault, Mailbox, SaaS

# a recent incident: the meeting must fit within 48 hours of its resolution
T0 = iso(utcnow() - dt.timedelta(minutes=30))
T1 = iso(utcnow() - dt.timedelta(minutes=10))


@pytest.fixture
def saas(monkeypatch):
    s = SaaS().start()
    for k, v in s.env().items():
        monkeypatch.setenv(k, v)
    yield s
    s.stop()
    assert not s.invalid, s.invalid  # every request body matched the vendor's schema


@pytest.fixture
def mailbox():
    box = Mailbox()
    yield box
    box.stop()


def confirmed(archive, incident="INC-9", severity="P1"):
    """A confirmed run that executed a mitigation (stage: identified), by alice."""
    return write(archive, started=T0, causes=("idle-connection-leak",), incident_id=incident, severity=severity)


def resolved(archive, incident="INC-9", severity="P1"):
    return write(archive, started=T1, incident_id=incident, severity=severity)


def run(archive, cfg, incident="INC-9", notifications=None):
    return checklist.after_run({"post_incident": cfg, "notify": {"public_url": "https://smartops.example"}},
                               {"incident_id": incident}, "r.ipynb", archive, notifications)


def full(saas, mailbox):
    return {**saas.config(), "smtp": mailbox.smtp(),
            "meeting": {"timezone": "Europe/Berlin", "people": {"alice": "alice@acme.example"},
                        "attendees": ["sre-leads@acme.example"]},
            "stakeholders": {"to": ["stakeholders@acme.example"]}}


def by_item(rows):
    return {r["item"]: r for r in rows}


def test_a_resolved_incident_gets_every_item_once_with_its_proof(archive, saas, mailbox, cli):
    confirmed(archive)
    first = by_item(run(archive, full(saas, mailbox)))
    assert first["status-page"]["status"] == "in progress" and first["tickets"]["status"] == "open"
    (sp,) = saas.incidents.values()
    assert sp["history"] == ["identified"] and sp["components"] == {"cmp-api": "partial_outage"}
    assert sp["impact_override"] == "critical"
    resolved(archive)
    rows = run(archive, full(saas, mailbox))
    items = by_item(rows)
    assert [r["status"] for r in rows] == ["done"] * 5 + ["open"]  # learnings: nobody said what was learned
    assert sp["history"] == ["identified", "resolved"] and sp["components"] == {"cmp-api": "operational"}
    assert items["status-page"]["link"] == sp["shortlink"]
    assert [h["status"] for h in saas.hooks] == ["identified", "resolved"]
    incident_issues = [i for i in saas.jira.values() if i["fields"]["issuetype"]["name"] == "Incident"]
    tickets = [i for i in saas.jira.values() if i["fields"]["issuetype"]["name"] == "Task"]
    assert len(incident_issues) == 1 and incident_issues[0]["edits"] == 1  # created, then given the resolution
    text = str(incident_issues[0]["fields"]["description"])
    assert "Incident resolved" in text and "Mitigation applied: terminate-idle on smartamazon" in text
    from smartops_nb import catalog

    fixes = catalog.get("db-pool-exhausted").permanent_fixes
    assert len(tickets) == len(fixes) == len(saas.links)
    assert {l["outwardIssue"]["key"] for l in saas.links} == {incident_issues[0]["key"]}
    gh = sorted(saas.issues.values(), key=lambda i: i["number"])
    assert len(gh) == 1 + len(fixes) and all("#1" in i["body"] for i in gh[1:])
    assert items["tickets"]["detail"]["tickets"][0]["link"].endswith("/browse/" + tickets[0]["key"])
    # the meeting: one invitation, within 48 h of resolution, in Berlin working hours, to the responders
    invites = [m for m in mailbox.messages if b"text/calendar" in m["data"]]
    summaries = [m for m in mailbox.messages if m not in invites]
    assert len(invites) == 1 and len(summaries) == 1
    assert summaries[0]["to"] == ["stakeholders@acme.example"]
    msg = email.message_from_bytes(invites[0]["data"])
    ics = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
    assert ics.get_param("method") == "REQUEST"
    cal = icalendar.Calendar.from_ical(ics.get_payload(decode=True))
    assert str(cal["METHOD"]) == "REQUEST"
    (event,) = cal.walk("VEVENT")
    start = event.decoded("DTSTART")
    resolved_at = parse_time(T1)
    assert resolved_at < start <= resolved_at + dt.timedelta(hours=48) - dt.timedelta(minutes=60)
    local = start.astimezone(zoneinfo.ZoneInfo("Europe/Berlin"))
    assert 9 <= local.hour < 17
    attendees = sorted(str(a).removeprefix("mailto:") for a in event.get("ATTENDEE"))
    assert attendees == ["alice@acme.example", "sre-leads@acme.example"]
    assert "https://smartops.example/incidents/INC-9/postmortem" in str(event["DESCRIPTION"])
    assert items["meeting"]["link"] == str(event["UID"]) == "postmortem-INC-9@smartops"
    # a re-run of the whole flow creates nothing new
    before = (len(saas.incidents), len(saas.jira), len(saas.issues), len(saas.links), len(mailbox.messages),
              len(saas.hooks), sp["history"][:])
    again = run(archive, full(saas, mailbox))
    assert [r["status"] for r in again] == [r["status"] for r in rows]
    assert before == (len(saas.incidents), len(saas.jira), len(saas.issues), len(saas.links),
                      len(mailbox.messages), len(saas.hooks), sp["history"])
    # a lesson ticks the last item; the post-mortem draft ticks all six with their proof
    out = cli("learn", "INC-9", "Alert on idle-in-transaction age, not only on the count", "--operator", "bob",
              "--archive", str(archive))
    assert out.returncode == 0, out.stderr
    shown = cli("incident", "checklist", "INC-9", "--archive", str(archive), "--json")
    assert [r["status"] for r in __import__("json").loads(shown.stdout)] == ["done"] * 6
    pm = cli("postmortem", "--incident", "INC-9", "--archive", str(archive), "-o", str(archive.parent / "pm.md"))
    assert pm.returncode == 0, pm.stderr
    md = (archive.parent / "pm.md").read_text()
    box = md[md.index("## Post-Incident Checklist"):md.index("## Charts") if "## Charts" in md else None]
    assert box.count("- [x]") == 7 and "- [ ]" not in box, box
    assert sp["shortlink"] in box and "postmortem-INC-9@smartops" in box and tickets[0]["key"] in box
    lessons = md[md.index("## Lessons Learned"):md.index("## Post-Incident Checklist")]
    assert "Alert on idle-in-transaction age" in lessons and "bob" in lessons


def test_a_tracker_answering_500_then_200_files_one_issue(archive, saas):
    confirmed(archive)
    resolved(archive)
    saas.faults.append(Fault("POST", r"^/rest/api/3/issue$", 500, times=1))
    saas.faults.append(Fault("POST", r"/issues$", 429, times=1, retry_after="1"))
    items = by_item(run(archive, saas.config("jira", "github")))
    assert items["timeline"]["status"] == "done" and items["tickets"]["status"] == "done"
    assert len([i for i in saas.jira.values() if i["fields"]["issuetype"]["name"] == "Incident"]) == 1
    assert ("POST", "/rest/api/3/issue", 500) in saas.requests and ("POST", "/repos/acme/ops/issues", 429) \
        in saas.requests


def test_a_refused_credential_fails_its_item_with_the_reason_and_everything_else_is_done(
        archive, saas, mailbox, monkeypatch):
    monkeypatch.setenv("TEST_JIRA_TOKEN", "wrong-token-987654")
    confirmed(archive)
    resolved(archive)
    cfg = {k: v for k, v in full(saas, mailbox).items() if k != "github"}
    items = by_item(run(archive, cfg))
    for item in ("timeline", "tickets"):
        assert items[item]["status"] == "failed"
        assert "HTTP 401" in items[item]["error"] and "not authenticated" in items[item]["error"]
        assert "wrong-token-987654" not in str(items[item])
    assert all(items[i]["status"] == "done" for i in ("status-page", "stakeholders", "meeting"))
    # fixed credential: --redo carries out only that item, and the tracker gets one issue
    monkeypatch.setenv("TEST_JIRA_TOKEN", saas.jira_token)
    row = checklist.redo({"post_incident": cfg}, archive, "INC-9", "timeline", "carol")
    assert row["status"] == "done" and row["by_whom"] == "carol"
    assert len(saas.jira) == 1 and len(mailbox.messages) == 2


def test_retries_are_bounded_by_the_total_time(saas):
    saas.faults.append(Fault("POST", "/hook", 503, times=100, retry_after="30"))
    with pytest.raises(http.CallFailed) as e:
        http.call("POST", f"{saas.url}/hook?token=sekrit-value", json={}, timeout=2, total=3)
    assert "HTTP 503" in str(e.value) and "gave up after 1 attempt" in str(e.value)
    assert "sekrit-value" not in str(e.value)


def test_an_http_date_retry_after_is_honoured():
    later = email.utils.format_datetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30), usegmt=True)
    assert 25 <= http.retry_after(later) <= 31 and http.retry_after("7") == 7 and http.retry_after("soon") is None


def test_a_p3_incident_needs_no_meeting(archive, saas, mailbox):
    confirmed(archive, severity="P3")
    resolved(archive, severity="P3")
    items = by_item(run(archive, full(saas, mailbox)))
    assert items["meeting"]["status"] == "not needed"
    assert not [m for m in mailbox.messages if b"text/calendar" in m["data"]]


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
    confirmed(archive)
    for args, says in [(["INC-404", "text"], "no record of incident"), (["INC-9", "   "], "needs some text"),
                       (["INC-9", "x", "--runbook", "nope"], "unknown runbook"),
                       (["INC-9", "x" * 2001], "at most 2000")]:
        out = cli("learn", *args, "--archive", str(archive))
        assert out.returncode == 2 and says in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert Store(archive).lessons(runbook="db-pool-exhausted") == []
