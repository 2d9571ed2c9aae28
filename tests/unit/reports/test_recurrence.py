"""A recurrence of an alert (a new firing episode) is its own incident, linked both ways (no services)."""
from __future__ import annotations

from smartops_nb.reports import incident
from smartops_nb.records.archive import open_archive
from tests.fixtures.archives import write

FIRST, SECOND, OTHER = ("PostgresConnectionsNearLimit-a1b2-20261204T160952Z",
                        "PostgresConnectionsNearLimit-a1b2-20261204T161335Z", "PostgresConnectionsNearLimit-ffff-20261204T161000Z")


def test_a_recurrence_links_to_the_previous_incident_and_counts_from_its_own_start(tmp_path):
    write(tmp_path, started="2026-12-04T16:10:00Z", incident_id=FIRST, causes=["idle-connection-leak"])
    write(tmp_path, started="2026-12-04T16:11:00Z", incident_id=FIRST)                  # confirming run
    write(tmp_path, started="2026-12-04T16:10:30Z", incident_id=OTHER)                  # another alert
    write(tmp_path, started="2026-12-04T16:13:40Z", incident_id=SECOND, causes=["idle-connection-leak"])
    first, second = incident.show(open_archive(tmp_path), FIRST), incident.show(open_archive(tmp_path), SECOND)
    assert (first["recurrence_of"], first["recurred_as"]) == (None, SECOND)
    assert (second["recurrence_of"], second["recurred_as"]) == (FIRST, None)
    assert first["status"] == incident.RESOLVED and second["status"] != incident.RESOLVED
    assert second["response"]["detected_at"].startswith("2026-12-04T16:13:40")
    assert f"recurrence of {FIRST}" in incident.text(second) and f"recurred as {SECOND}" in incident.text(first)
    assert incident.recurrence(open_archive(tmp_path), "INC-1") == {"recurrence_of": None, "recurred_as": None}
