"""The plan store of a team archive, in its PostgreSQL index: the same behaviour as beside a folder
(the unit tests of tests/unit/records/test_plans.py, run here on a real PostgreSQL), and plans moved
between the two as `archive migrate` moves them."""
from __future__ import annotations

import pytest

from smartops_nb.records.index_postgres import PostgresIndex
from smartops_nb.records.plans import PostgresPlanStore, SqlitePlanStore
# the same tests, collected here with this module's `store` fixture
from tests.unit.records.test_plans import (  # noqa: F401
    _plan, test_a_plan_whose_target_stays_locked_fails_with_the_reason_and_does_not_stay_approved,
    test_a_released_plan_is_pending_again_and_approvable,
    test_denied_expired_unknown_and_finished_plans_are_refused, test_only_one_of_many_concurrent_approvals_wins,
    test_plans_on_one_target_run_one_after_the_other_and_a_long_wait_is_refused,
    test_two_person_rule_first_approval_leaves_it_pending_same_person_refused_second_claims,
    test_a_denial_keeps_who_denied)

pytestmark = pytest.mark.scenario


@pytest.fixture
def store(archive_dsn):
    return PostgresPlanStore(PostgresIndex(archive_dsn))


def test_a_folder_archive_s_plans_move_to_postgresql_as_they_are(store, tmp_path):
    src = SqlitePlanStore(tmp_path)
    pending, denied = _plan(), _plan()
    src.register({"plans": [pending, denied]}, "r.ipynb")
    src.deny(denied["id"], "carol", "no")
    store.register({"plans": [_plan()]}, "other.ipynb")  # the schema exists, with a plan of its own
    store.insert(src.rows())
    assert store.get(pending["id"]).state == "pending" and store.get(denied["id"]).state == "denied"
    assert store.claim(pending["id"], "alice").decided_by == "alice"
