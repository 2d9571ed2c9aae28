"""The post-incident checklist's store in a team archive's PostgreSQL index: the same behaviour as beside
a folder (tests/unit/records/test_checklist_store.py, run here on a real PostgreSQL)."""
from __future__ import annotations

import pytest

from smartops_nb.records.checklist_store import Store
from smartops_nb.records.archive import open_archive
# the same tests, collected here with this module's `store` fixture
from tests.unit.records.test_checklist_store import (  # noqa: F401
    test_a_failed_creation_releases_its_claim_and_a_stale_claim_is_taken_over,
    test_an_archive_without_an_index_reads_as_empty, test_items_are_upserted_and_lessons_come_newest_first,
    test_only_one_of_many_concurrent_claims_creates_the_object)

pytestmark = pytest.mark.scenario


@pytest.fixture
def store(archive_dsn, tmp_path):
    return Store(open_archive(tmp_path / "incidents", archive_dsn))
