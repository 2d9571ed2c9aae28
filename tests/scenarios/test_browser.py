"""The runbooks in a real browser: JupyterLab (`smartops lab`'s server) driven by Playwright and Chromium.

JupyterLab runs on a free loopback port with a token, its root a temporary folder holding a copy of
the notebooks, a parameters file pointing at the test sandbox (preselected, as `smartops lab -f` does)
and the archive. Screenshots go to ``test-output/browser/`` (git-ignored): look at them.
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import nbformat
import pytest
import yaml

from smartops_nb.execution.lab import Lab
from smartops_nb.records.storage import file_sha256
from smartops_nb.records.archive import open_archive
from tests.conftest import REPO, require, run_runbook
from tests.fixtures.leak import LEAK_IDLE_MINUTES, idle_app_sessions, inject_leak
from tests.fixtures.web import CHROMIUM, FLAGS, SHOTS

RUNBOOK = "notebooks/db_pool_exhausted.ipynb"
@pytest.fixture(scope="module")
def browser_ready():
    require("chromium", CHROMIUM.is_file(), "apt-get install chromium")
    require("playwright", importlib.util.find_spec("playwright") is not None, "pip install -e '.[test]'")


@pytest.fixture(scope="module")
def lab(browser_ready, sandbox, tmp_path_factory):
    """JupyterLab on a free loopback port, root = copies of notebooks/ and a sandbox parameters file."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    (root / "parameters").mkdir()
    params = {**sandbox.params(), "api_log_path": str(sandbox.api_log), "idle_minutes": LEAK_IDLE_MINUTES,
              "operator": "browser-test"}
    (root / "parameters" / "sandbox.yaml").write_text(yaml.safe_dump(params))
    server = Lab(root, root / "incidents", root / "parameters" / "sandbox.yaml", log_path=root / "lab.log")
    server.start(timeout=90)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(lab, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=FLAGS, viewport={"width": 1400, "height": 1000})
        try:
            yield context
        finally:
            context.close()


def _shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    print(f"screenshot: {path}")
    return path


def _open(browser, lab, path: str):
    page = browser.new_page()
    page.goto(lab.url(path), timeout=60_000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_function("() => !!window.jupyterapp", timeout=30_000)
    no = page.get_by_role("button", name="No", exact=True)  # "notified about Jupyter news?" toast
    if no.count():
        no.first.click()
    return page


def _output(page, text: str, timeout: float = 120_000):
    loc = page.locator(".jp-OutputArea-output", has_text=text).first
    loc.wait_for(timeout=timeout)
    return loc


@pytest.fixture(scope="module")
def leak_investigated(lab, browser, sandbox):
    """The runbook opened in JupyterLab and run cell by cell (Run All) against a leaking PostgreSQL."""
    sandbox.heal()
    inject_leak(sandbox)
    assert idle_app_sessions(sandbox) >= 50
    page = _open(browser, lab, RUNBOOK)
    page.get_by_text("| Idle").first.wait_for(timeout=60_000)  # the kernel is up
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    _output(page, "Incident record summary")
    yield page
    page.close()
    sandbox.heal()


def test_runbook_runs_in_jupyterlab_with_charts_and_diagnosis(leak_investigated, lab):
    page = leak_investigated
    _output(page, "Parameters from")  # the preselected file gave the sandbox's values
    images = page.locator(".jp-OutputArea-output img")
    assert images.count() >= 2  # connections against the limit, the breakdown panels
    assert all(images.nth(i).evaluate("i => i.naturalWidth > 100") for i in range(images.count()))
    summary = _output(page, "Incident record summary")
    assert "CONFIRMED" in summary.inner_text()
    diagnosis_row = summary.get_by_role("row", name="Diagnosis CONFIRMED")
    assert "idle-connection-leak" in diagnosis_row.inner_text()
    summary.scroll_into_view_if_needed()
    _shot(page, "a-runbook-diagnosis")
    images.first.scroll_into_view_if_needed()
    _shot(page, "a-runbook-chart")


def test_mitigation_button_runs_it_and_the_saved_record_logs_it(leak_investigated, lab, sandbox):
    page = leak_investigated
    approval = page.locator(".jp-OutputArea-output", has_text="Approve terminate-idle-connections?").last
    confirm = approval.get_by_placeholder("to confirm")
    confirm.scroll_into_view_if_needed()
    confirm.fill("terminate-idle-connections")
    approval.get_by_role("button", name="Run terminate-idle-connections").click()
    approval.locator("b", has_text="executed").wait_for(timeout=60_000)
    _shot(page, "b-mitigation-executed")
    assert idle_app_sessions(sandbox) < 5  # the leaked connections are gone

    save = page.get_by_role("button", name="Save incident record")
    save.scroll_into_view_if_needed()
    save.click()
    saved = page.locator("code.smartops-record")
    saved.wait_for(timeout=60_000)
    _shot(page, "b-record-saved")
    record = Path(saved.inner_text())
    assert record.parent == lab.archive and record.exists()
    nb = nbformat.read(record, as_version=4)
    s = nb.metadata["smartops"]
    assert s["origin"] == "jupyterlab" and s["status"] == "completed"
    executed = [a for a in s["actions"] if a["mode"] == "executed"]
    assert [a["action"] for a in executed] == ["terminate-idle-connections"]
    assert executed[0]["approved_by"] == "interactive" and executed[0]["result"]["terminated_pids"]
    assert "idle-connection-leak" in s["diagnosis"]["causes"]
    # the page's outputs (charts) were saved with it, and the record is in the archive's index
    assert any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert open_archive(lab.archive).indexed_hash(record.name) == file_sha256(record)


def test_archived_record_shows_its_charts_without_running(lab, browser, sandbox):
    sandbox.heal()
    inject_leak(sandbox)
    try:
        params = yaml.safe_load((lab.root / "parameters" / "sandbox.yaml").read_text())
        rec = run_runbook("db-pool-exhausted", lab.archive, params)
    finally:
        sandbox.heal()
    stored = sum("image/png" in o.get("data", {}) for c in rec.nb.cells for o in c.get("outputs", []))
    assert stored >= 2
    page = _open(browser, lab, str(rec.path.relative_to(lab.root)))
    images = page.locator(".jp-OutputArea-output img")
    images.first.wait_for(timeout=30_000)
    assert images.count() == stored
    counts = page.locator(".jp-InputArea-prompt").all_inner_texts()
    assert any("[1]" in c for c in counts)  # the stored execution counts: nothing ran again
    assert page.locator(".jp-OutputArea-output", has_text="Incident record summary").count() == 1
    images.first.scroll_into_view_if_needed()
    _shot(page, "c-archived-record")
    page.close()
