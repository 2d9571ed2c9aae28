"""The post-incident checklist against loopback services that speak each vendor's API (tests/fixtures/saas.py)
and a real SMTP server (aiosmtpd): what is created, once; retries, refusals and masked errors; the kept state;
and a whole sandbox incident (leak → confirmed → approved mitigation → resolved) with every item ticked."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import zoneinfo

import icalendar
import pytest

import json

import yaml

from smartops_nb import catalog
from smartops_nb.execution import approve
from smartops_nb.params import iso, parse_time, utcnow
from smartops_nb.postincident import checklist, http
from smartops_nb.records.checklist_store import Store
from smartops_nb.records.archive import open_archive
from tests.conftest import run_runbook
from tests.fixtures.archives import cli, write  # noqa: F401  (cli: a fixture)
from tests.fixtures.leak import LEAK_IDLE_MINUTES
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
                               {"incident_id": incident}, "r.ipynb", open_archive(archive), notifications)


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
    assert [r["status"] for r in json.loads(shown.stdout)] == ["done"] * 6
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
    row = checklist.redo({"post_incident": cfg}, open_archive(archive), "INC-9", "timeline", "carol")
    assert row["status"] == "done" and row["by_whom"] == "carol"
    assert len(saas.jira) == 1 and len(mailbox.messages) == 2


def test_a_p3_incident_needs_no_meeting(archive, saas, mailbox):
    confirmed(archive, severity="P3")
    resolved(archive, severity="P3")
    items = by_item(run(archive, full(saas, mailbox)))
    assert items["meeting"]["status"] == "not needed"
    assert not [m for m in mailbox.messages if b"text/calendar" in m["data"]]


def test_retries_are_bounded_by_the_total_time(saas):
    saas.faults.append(Fault("POST", "/hook", 503, times=100, retry_after="30"))
    with pytest.raises(http.CallFailed) as e:
        http.call("POST", f"{saas.url}/hook?token=sekrit-value", json={}, timeout=2, total=3)
    assert "HTTP 503" in str(e.value) and "gave up after 1 attempt" in str(e.value)
    assert "sekrit-value" not in str(e.value)


def invitation(mailbox) -> icalendar.Event:
    (invite,) = [m for m in mailbox.messages if b"text/calendar" in m["data"]]
    msg = email.message_from_bytes(invite["data"])
    ics = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
    (event,) = icalendar.Calendar.from_ical(ics.get_payload(decode=True)).walk("VEVENT")
    return event


def test_a_sandbox_incident_carries_out_the_whole_checklist_once(leak, healthy_sandbox, sandbox_params, archive,
                                                               saas, mailbox, tmp_path, cli):
    params = tmp_path / "post-incident.yaml"
    params.write_text(yaml.safe_dump({"notify": {"public_url": "https://smartops.example"}, "post_incident": {
        **saas.config("statuspage", "jira"), "smtp": mailbox.smtp(),
        "meeting": {"timezone": "Europe/Berlin", "people": {"alice": "alice@acme.example"},
                    "attendees": ["sre-leads@acme.example"]},
        "stakeholders": {"to": ["stakeholders@acme.example"]}}}))
    base = {**sandbox_params, "idle_minutes": LEAK_IDLE_MINUTES, "incident_id": "INC-77", "environment": "sandbox"}
    # the alert's run confirms the leak and recommends a plan: the status page says investigating
    first = run_runbook("db-pool-exhausted", archive, base, files=(str(params),))
    assert first.summary["diagnosis"]["confirmed"]
    (sp,) = saas.incidents.values()
    assert sp["history"] == ["investigating"] and sp["components"] == {"cmp-api": "major_outage"}
    # alice approves the plan: the mitigation runs, the status page says identified
    (plan,) = first.summary["plans"]
    out = approve.carry_out(plan["id"], "alice", open_archive(archive), files=[str(params)])
    assert out.status == "executed", out.reason
    assert sp["history"] == ["investigating", "identified"]
    # a later run finds nothing: resolved, and everything else goes out
    healthy_sandbox.heal()
    confirm = run_runbook("db-pool-exhausted", archive, base, files=(str(params),))
    assert not confirm.summary["diagnosis"]["confirmed"]
    assert sp["history"] == ["investigating", "identified", "resolved"]
    issues = [i for i in saas.jira.values() if i["fields"]["issuetype"]["name"] == "Incident"]
    tickets = [i for i in saas.jira.values() if i["fields"]["issuetype"]["name"] == "Task"]
    assert len(issues) == 1 and len(tickets) == len(catalog.get("db-pool-exhausted").permanent_fixes)
    text = json.dumps(issues[0]["fields"]["description"])
    for milestone in ("Incident detected", "Root cause identified", "Mitigation applied: terminate-idle-connections",
                      f"Plan {plan['id']} approved by alice", "Incident resolved"):
        assert milestone in text, milestone
    assert {l["outwardIssue"]["key"] for l in saas.links} == {issues[0]["key"]} and len(saas.links) == len(tickets)
    event = invitation(mailbox)
    resolved_at = parse_time(confirm.summary["finished_at"])
    assert resolved_at < event.decoded("DTSTART") <= resolved_at + dt.timedelta(hours=48)
    attendees = {str(a).removeprefix("mailto:") for a in event.get("ATTENDEE")}
    assert attendees >= {"alice@acme.example", "sre-leads@acme.example"}
    # what was learned, then the checklist: all six done with their proof
    assert cli("learn", "INC-77", "Watch idle-in-transaction age per application", "--operator", "alice",
               "--archive", str(archive)).returncode == 0
    rows = json.loads(cli("incident", "show", "INC-77", "--json", "--archive", str(archive)).stdout)["checklist"]
    assert [r["status"] for r in rows] == ["done"] * 6, rows
    links = {r["item"]: r["link"] for r in rows}
    assert links["status-page"] == sp["shortlink"] and links["timeline"].endswith(f"/browse/{issues[0]['key']}")
    assert links["meeting"] == str(event["UID"]) and links["stakeholders"] == "mailto:stakeholders@acme.example"
    pm = tmp_path / "pm.md"
    assert cli("postmortem", "--incident", "INC-77", "--archive", str(archive), "-o", str(pm)).returncode == 0
    md = pm.read_text()
    box = md[md.index("## Post-Incident Checklist"):md.index("## Evidence")].split("## Charts")[0]
    assert box.count("- [x]") == 7 and "- [ ]" not in box, box
    assert "Watch idle-in-transaction age" in md[md.index("## Lessons Learned"):]
    # re-running the whole flow creates nothing new
    counts = (len(saas.incidents), len(saas.jira), len(saas.links), len(mailbox.messages), list(sp["history"]))
    again = run_runbook("db-pool-exhausted", archive, base, files=(str(params),))
    assert counts == (len(saas.incidents), len(saas.jira), len(saas.links), len(mailbox.messages), sp["history"])
    # and every later run of the runbook opens with the lesson
    (opening,) = [json.dumps(c.outputs) for c in again.nb.cells if "so.begin(" in c.source]
    assert "Learned from earlier incidents" in opening and "Watch idle-in-transaction age" in opening



def test_the_incident_page_shows_the_checklist_and_keeps_a_lesson(archive, saas):
    import re

    import httpx

    from tests.fixtures.web import serve_web

    confirmed(archive)
    resolved(archive)
    run(archive, saas.config("statuspage"))
    hostile = "<script>alert('lesson')</script> check the pool's idle timeout"
    with serve_web(open_archive(archive), "pi-token-123456") as url, httpx.Client(base_url=url, timeout=30,
                                                                   follow_redirects=True) as web:
        page = web.get("/incidents/INC-9", params={"token": "pi-token-123456"}).text
        table = page[page.index('id="checklist"'):page.index("</table>")]
        assert table.count("<tr>") == 6 and "Update status page" in table and "stspg.io" in table
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)[1]
        assert web.post("/incidents/INC-9/lessons", data={"text": hostile, "operator": "dana"}).status_code == 403
        after = web.post("/incidents/INC-9/lessons", data={"csrf": csrf, "text": hostile, "operator": "dana"}).text
        assert "kept for runbook db-pool-exhausted" in after and "<script>alert" not in after
        learned = after[after.index('id="checklist"'):after.index("</table>")]
        assert learned.count(">done<") == 2 and "dana" in learned  # the status page, and now the lesson
    assert [x["by_whom"] for x in Store(open_archive(archive)).lessons(incident_id="INC-9")] == ["dana"]


def test_two_replicas_finishing_at_once_file_one_issue(archive, saas):
    import threading

    confirmed(archive)
    resolved(archive)
    start = threading.Barrier(2)
    results = []

    def replica():
        start.wait()
        results.append(by_item(run(archive, saas.config("jira", "statuspage"))))

    threads = [threading.Thread(target=replica) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(saas.incidents) == 1 and len([i for i in saas.jira.values()
                                             if i["fields"]["issuetype"]["name"] == "Incident"]) == 1
    assert all(r[i]["status"] in ("done", "in progress") for r in results for i in ("status-page", "timeline"))
    final = by_item(run(archive, saas.config("jira", "statuspage")))  # the next run finishes what the other held
    assert final["timeline"]["status"] == final["tickets"]["status"] == "done"
    assert len(saas.jira) == 1 + len(saas.links)


def test_smtp_login_comes_from_the_environment_and_a_refusal_is_masked(archive, monkeypatch):
    box = Mailbox(login=("smartops", "mail-pass-4711"))
    try:
        confirmed(archive, severity="P3")
        resolved(archive, severity="P3")
        smtp = {**box.smtp(), "username": "env:TEST_SMTP_USER", "password": "env:TEST_SMTP_PASSWORD"}
        cfg = {"smtp": smtp, "stakeholders": {"to": ["stakeholders@acme.example"]}}
        monkeypatch.setenv("TEST_SMTP_USER", "smartops")
        monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong-pass-0815")
        items = by_item(run(archive, cfg))
        assert items["stakeholders"]["status"] == "failed" and "535" in items["stakeholders"]["error"]
        assert "wrong-pass-0815" not in str(items) and not box.messages
        monkeypatch.setenv("TEST_SMTP_PASSWORD", "mail-pass-4711")
        assert by_item(run(archive, cfg))["stakeholders"]["status"] == "done"  # the next run retries it
        (msg,) = box.messages
        body = email.message_from_bytes(msg["data"], policy=email.policy.default)
        assert body["Subject"].startswith("RESOLVED: [P3]") and "Timeline:" in body.get_content()
    finally:
        box.stop()
