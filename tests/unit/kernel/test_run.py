"""A run's diagnosis never turns a step that did not run into a silent "not confirmed"."""
from __future__ import annotations

from smartops_nb.checks import db_pool
from smartops_nb.findings import Finding
from smartops_nb.kernel.run import Run


def test_a_step_the_diagnosis_reads_but_that_did_not_run_is_an_error_and_inconclusive():
    run = Run("db-pool-exhausted", {})
    with run.step(db_pool.Step.LOGIN, "Log in"):
        run.finding(Finding("ok", "logged in"))
    # USAGE and IDLE never ran (a cell skipped, or a step renamed in the notebook)
    diagnosis = run.diagnose(db_pool.diagnose)
    missing = {f.check: f for f in run.findings if f.data.get("missing_step")}
    assert set(missing) == {db_pool.Step.USAGE, db_pool.Step.IDLE}
    assert all(f.status == "error" for f in missing.values())
    assert not diagnosis.confirmed and diagnosis.inconclusive
    assert set(diagnosis.incomplete) == {"connection-usage", "idle-connections"}


def test_step_ids_are_plain_strings_in_the_record():
    run = Run("db-pool-exhausted", {})
    with run.step(db_pool.Step.USAGE, "Usage"):
        run.finding(Finding("ok", "fine"))
    assert type(run.findings[0].check) is str and run.findings[0].check == "connection-usage"
    assert run.summary()["findings"][0]["check"] == "connection-usage"
