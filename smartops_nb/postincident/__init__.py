"""After the incident: the seed's post-incident checklist carried out from the records, each item with
its proof (host side; configured by the ``post_incident:`` section of a parameters file).

``checklist`` decides what is due and keeps each item's state; ``statuspage`` (Statuspage, a JSON
webhook), ``trackers`` (Jira, GitHub Issues) and ``mail`` (the meeting's iCalendar invitation, the
stakeholders' summary) talk to the outside through ``http`` (bounded retries) and ``once`` (an
idempotency key per incident and item in the archive's index, :mod:`smartops_nb.records.checklist_store`).
"""
