"""Episode claims in the archive's SQLite index: the first notification of an episode runs, repeats
do not, a refused run is released, and a route's recheck_after turns a late repeat into a re-check."""
from __future__ import annotations

import threading

from smartops_nb.records.entries import NEW, RECHECK, REPEAT, episode_verdict
from smartops_nb.records.index_sqlite import SqliteIndex


def test_first_claim_runs_repeats_do_not_and_a_release_lets_the_retry_run(tmp_path):
    index = SqliteIndex(tmp_path)
    assert index.claim_episode("A-f-20261204T160952Z", "firing") == NEW
    assert index.claim_episode("A-f-20261204T160952Z", "firing") == REPEAT
    assert index.claim_episode("A-f-20261204T160952Z", "resolved") == NEW   # another kind
    assert index.claim_episode("A-f-20261204T161335Z", "firing") == NEW     # the recurrence
    index.release_episode("A-f-20261204T160952Z", "firing")
    assert index.claim_episode("A-f-20261204T160952Z", "firing") == NEW


def test_concurrent_claims_of_one_episode_give_exactly_one_new(tmp_path):
    index, out = SqliteIndex(tmp_path), []
    index.claim_episode("warm-up", "firing")  # the index exists (its creation is serialised anyway)
    threads = [threading.Thread(target=lambda: out.append(index.claim_episode("B-f-20261204T160952Z", "firing")))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(out) == [NEW] + [REPEAT] * 7


def test_a_repeat_after_recheck_after_is_a_recheck():
    assert episode_verdict(None, 0, "2026-12-04T16:00:00Z") == NEW
    assert episode_verdict("2026-12-04T16:00:00Z", 0, "2026-12-05T16:00:00Z") == REPEAT
    assert episode_verdict("2026-12-04T16:00:00Z", 1800, "2026-12-04T16:29:59Z") == REPEAT
    assert episode_verdict("2026-12-04T16:00:00Z", 1800, "2026-12-04T16:30:00Z") == RECHECK
