"""Episode claims in the team's PostgreSQL index: serve replicas sharing it run an episode once
(two Alertmanagers of an HA pair, each sending to another replica, at the same moment)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg

from smartops_nb.records.entries import NEW, RECHECK, REPEAT
from smartops_nb.records.index_postgres import PostgresIndex


def test_replicas_claiming_one_episode_at_once_get_exactly_one_new(archive_dsn):
    replicas = [PostgresIndex(archive_dsn) for _ in range(6)]   # one per serve replica, each its own connections
    with ThreadPoolExecutor(6) as ex:
        verdicts = list(ex.map(lambda ix: ix.claim_episode("APIDown-f-20261204T160952Z", "firing"), replicas))
    assert sorted(verdicts) == [NEW] + [REPEAT] * 5
    index = replicas[0]
    assert index.claim_episode("APIDown-f-20261204T160952Z", "resolved") == NEW
    assert index.claim_episode("APIDown-f-20261204T160952Z", "firing", recheck_after=1800) == REPEAT
    with psycopg.connect(archive_dsn, autocommit=True) as c:   # the last run was 31 minutes ago
        c.execute("UPDATE smartops_archive.alert_episodes SET run_at = '2026-12-04T15:00:00Z'")
    assert index.claim_episode("APIDown-f-20261204T160952Z", "firing", recheck_after=1800) == RECHECK
    assert index.claim_episode("APIDown-f-20261204T160952Z", "firing", recheck_after=1800) == REPEAT
    index.release_episode("APIDown-f-20261204T161335Z", "firing")   # nothing to release: no error
    index.release_episode("APIDown-f-20261204T160952Z", "resolved")
    assert index.claim_episode("APIDown-f-20261204T160952Z", "resolved") == NEW
