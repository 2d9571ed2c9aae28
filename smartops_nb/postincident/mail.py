"""E-mail: the post-mortem meeting's invitation (iCalendar ``METHOD:REQUEST``, RFC 5546) and the
resolution summary to stakeholders, sent by SMTP (STARTTLS and login when configured, credentials
from the environment, a timeout on the whole conversation)."""
from __future__ import annotations

import datetime as dt
import smtplib
import zoneinfo
from email.message import EmailMessage
from typing import Any

from .config import secret
from .facts import Incident, timeline_text


def slot(resolved: dt.datetime, now: dt.datetime, meeting: dict[str, Any]) -> dt.datetime:
    """When the post-mortem meets: the first whole hour in working hours (``hours`` of ``timezone``) at
    least an hour from ``now`` that ends within ``within_hours`` of resolution, on a weekday if one fits,
    else on any day (the seed's 48 hours win over the weekend); the first weekday slot after that window
    only when no slot fits at all. Aware UTC."""
    tz = zoneinfo.ZoneInfo(meeting["timezone"])
    start_h, end_h = meeting["hours"]
    length = dt.timedelta(minutes=meeting["duration_minutes"])
    limit = resolved + dt.timedelta(hours=meeting["within_hours"])
    t = (max(now, resolved) + dt.timedelta(hours=1)).astimezone(tz).replace(minute=0, second=0, microsecond=0)
    t += dt.timedelta(hours=1)
    candidates = []
    for _ in range(24 * 14):
        local_end = t + length
        if start_h <= t.hour and (local_end.hour, local_end.minute) <= (end_h, 0) and local_end.date() == t.date():
            candidates.append(t)
        t += dt.timedelta(hours=1)
    within = [c for c in candidates if c + length <= limit]
    weekday = [c for c in within if c.weekday() < 5]
    chosen = (weekday or within or [c for c in candidates if c.weekday() < 5] or candidates)[0]
    return chosen.astimezone(dt.timezone.utc)


def uid(inc: Incident) -> str:
    return f"postmortem-{inc.incident_id}@smartops"


def attendees(inc: Incident, meeting: dict[str, Any]) -> list[str]:
    """The people who took part (responders, approvers: by their e-mail in ``people``, or as named when
    the records name them by e-mail) and the configured list, each once."""
    people = meeting["people"]
    found = [people.get(p) or (p if "@" in p else None) for p in inc.participants]
    return list(dict.fromkeys(a for a in [*found, *meeting["attendees"]] if a))


def invitation(inc: Incident, start: dt.datetime, to: list[str], sender: str, meeting: dict[str, Any],
               draft: str) -> bytes:
    """The ``.ics`` of the meeting (one VEVENT, its UID stable per incident)."""
    import icalendar

    cal = icalendar.Calendar()
    cal.add("prodid", "-//SmartOps//post-incident//EN")
    cal.add("version", "2.0")
    cal.add("method", "REQUEST")
    ev = icalendar.Event()
    ev.add("uid", uid(inc))
    ev.add("dtstamp", dt.datetime.now(dt.timezone.utc))
    ev.add("dtstart", start)
    ev.add("dtend", start + dt.timedelta(minutes=meeting["duration_minutes"]))
    ev.add("summary", f"Post-mortem: incident {inc.incident_id} ({inc.severity}, {inc.title or inc.runbook})")
    ev.add("description", f"Post-mortem of {inc.headline}.\nDraft: {draft}\n\nTimeline:\n" + "\n".join(timeline_text(inc)))
    ev.add("organizer", f"mailto:{sender}")
    for a in to:
        attendee = icalendar.vCalAddress(f"mailto:{a}")
        attendee.params["ROLE"] = icalendar.vText("REQ-PARTICIPANT")
        attendee.params["PARTSTAT"] = icalendar.vText("NEEDS-ACTION")
        attendee.params["RSVP"] = icalendar.vText("TRUE")
        ev.add("attendee", attendee, encode=0)
    ev.add("sequence", 0)
    cal.add_component(ev)
    return cal.to_ical()


def draft_reference(inc: Incident) -> str:
    return inc.pages.get("postmortem") or f"`smartops postmortem --incident {inc.incident_id}`"


def invitation_message(inc: Incident, cfg: dict[str, Any], start: dt.datetime, to: list[str]) -> EmailMessage:
    sender, meeting = cfg["smtp"]["sender"], cfg["meeting"]
    draft = draft_reference(inc)
    msg = EmailMessage()
    msg["Subject"] = f"Invitation: post-mortem of incident {inc.incident_id} ({inc.severity})"
    msg["From"], msg["To"] = sender, ", ".join(to)
    local = start.astimezone(zoneinfo.ZoneInfo(meeting["timezone"]))
    msg.set_content(f"Post-mortem of {inc.headline}\nWhen: {local:%A %Y-%m-%d %H:%M} {meeting['timezone']}\n"
                    f"Draft post-mortem: {draft}\n")
    ics = invitation(inc, start, to, sender, meeting, draft)
    msg.add_alternative(ics, maintype="text", subtype="calendar", params={"method": "REQUEST"})
    msg.add_attachment(ics, maintype="application", subtype="ics", filename="invite.ics")
    return msg


def summary_message(inc: Incident, cfg: dict[str, Any]) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"RESOLVED: {inc.headline}"
    msg["From"], msg["To"] = cfg["smtp"]["sender"], ", ".join(cfg["stakeholders"]["to"])
    lines = [f"{inc.headline} is resolved" + (f" ({inc.resolved:%Y-%m-%d %H:%M} UTC)." if inc.resolved else "."),
             f"Cause: {', '.join(inc.causes) or 'not confirmed'}. {inc.diagnosis}".strip(),
             f"Mitigation: {'; '.join(inc.actions) or 'none executed by SmartOps'}",
             f"Post-mortem draft: {draft_reference(inc)}", "", "Timeline:", *timeline_text(inc)]
    if inc.pages:
        lines.insert(3, f"Incident page: {inc.pages['incident']}")
    msg.set_content("\n".join(lines) + "\n")
    return msg


def send(cfg: dict[str, Any], msg: EmailMessage) -> None:
    """Send one message; smtplib's and socket errors propagate (the caller masks and records them)."""
    s = cfg["smtp"]
    with smtplib.SMTP(secret(s, "host", "smtp"), int(s["port"]), timeout=cfg["timeout_s"]) as smtp:
        if s["starttls"]:
            smtp.starttls()
        user = secret(s, "username", "smtp")
        if user:
            smtp.login(user, secret(s, "password", "smtp"))
        smtp.send_message(msg)
