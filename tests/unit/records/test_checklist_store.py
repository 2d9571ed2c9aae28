"""The post-incident checklist's store in the archive index (SQLite beside a folder here; the same tests
run on PostgreSQL in tests/scenarios/test_checklist_store_postgres.py): claims that only one caller wins,
kept objects reused, stale claims taken over, items upserted, lessons newest first."""
from __future__ import annotations

import datetime as dt

import pytest

from smartops_nb.params import utcnow
from smartops_nb.postincident.once import once
from smartops_nb.records import checklist_store
from smartops_nb.records.checklist_store import Claimed, Store
from smartops_nb.records.archive import open_archive
from tests.conftest import at_once


@pytest.fixture
def store(archive):
    return Store(open_archive(archive))


def test_an_archive_without_an_index_reads_as_empty(store):
    assert store.items("INC-1") == {} and store.lessons(runbook="db-pool-exhausted") == [] and store.key("k") is None


def test_only_one_of_many_concurrent_claims_creates_the_object(store):
    made = []
    raised = at_once(lambda: once(store, "INC-1:jira:incident", "INC-1", "timeline",
                                  lambda: (made.append(1), ("OPS-1", "u"))[1]))
    errors = [e for e in raised if not isinstance(e, Claimed)]
    assert not errors and len(made) == 1 and len(made) + len(raised) <= 8
    assert once(store, "INC-1:jira:incident", "INC-1", "timeline", lambda: ("OPS-2", "x")) == ("OPS-1", "u", False)


def test_a_failed_creation_releases_its_claim_and_a_stale_claim_is_taken_over(store, monkeypatch):
    def boom():
        raise RuntimeError("HTTP 500")

    with pytest.raises(RuntimeError):
        once(store, "INC-1:statuspage", "INC-1", "status-page", boom)
    assert store.key("INC-1:statuspage") is None
    assert store.claim("INC-1:statuspage", "INC-1", "status-page") is None  # held, no object yet (a crash)
    with pytest.raises(Claimed):
        store.claim("INC-1:statuspage", "INC-1", "status-page")
    later = utcnow() + dt.timedelta(seconds=checklist_store.CLAIM_STALE_S + 1)
    monkeypatch.setattr(checklist_store, "utcnow", lambda: later)
    assert store.claim("INC-1:statuspage", "INC-1", "status-page") is None  # taken over
    store.keep("INC-1:statuspage", "sp1", "https://stspg.io/sp1")
    assert store.claim("INC-1:statuspage", "INC-1", "status-page")["ref"] == "sp1"


def test_items_are_upserted_and_lessons_come_newest_first(store):
    store.set_item("INC-1", "timeline", "failed", by="smartops", error="HTTP 401 Unauthorized")
    store.set_item("INC-1", "timeline", "done", by="carol", link="https://jira/browse/OPS-1", detail={"events": 5})
    (row,) = store.items("INC-1").values()
    assert (row["status"], row["by_whom"], row["error"], row["detail"]) == ("done", "carol", "", {"events": 5})
    with store.held():  # one connection for both
        store.add_lesson("INC-1", "db-pool-exhausted", "one", "alice")
        store.add_lesson("INC-2", "db-pool-exhausted", "two", "bob")
        store.add_lesson("INC-3", "api-down", "three", "bob")
    found = store.lessons(runbook="db-pool-exhausted")
    assert {x["text"] for x in found} == {"one", "two"}
    assert [x["at"] for x in found] == sorted((x["at"] for x in found), reverse=True)
    assert [x["text"] for x in store.lessons(incident_id="INC-2")] == ["two"]
