"""The benches' own helpers follow the product: a served alert's record is found by its alert."""
from __future__ import annotations

import json
import sys

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

import benchlib  # noqa: E402


def test_a_record_is_found_by_its_alert_whatever_its_episode(tmp_path):
    episode = f"{benchlib.ALERT_NAME}-0123456789abcdef-20261205T010608Z"  # serve's incident id: one episode
    (tmp_path / "r.ipynb").write_text(json.dumps({"metadata": {"smartops": {"incident_id": episode}}}))
    (tmp_path / "manual.ipynb").write_text(json.dumps({"metadata": {"smartops": {"incident_id": "INC-7"}}}))
    (tmp_path / "partial.ipynb").write_text("{")  # being written: read next time
    seen = benchlib.records_by_incident(tmp_path, {})
    assert f"incident:{benchlib.ALERT_NAME}-0123456789abcdef" in seen and "incident:INC-7" in seen
    assert str(tmp_path / "partial.ipynb") not in seen
