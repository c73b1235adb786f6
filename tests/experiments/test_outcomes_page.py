"""Issue 23: the outcomes page of the staff web app in headless Chromium over a real uvicorn."""

from __future__ import annotations

import os
from collections import Counter
from datetime import timedelta

import pytest
from selenium.webdriver.common.by import By

from tests.browser import chromium
from tests.engine import helpers as h
from tests.experiments.test_experiments import arms, population, promo
from tests.live_app import LiveApp, plugin_app
from tests.staff.conftest import SECRETS, config
from tests.staff.test_staff_page_scope import log_in

browser = pytest.fixture(chromium)
SHOTS = os.environ.get("CAREPATH_SCREENSHOTS")  # a folder: save what the page looks like (for docs/)


@pytest.fixture
def trial(database_url, settings, clock):
    """80 patients through a marketing experiment with a rare third variant; variant b re-visits more."""
    j = promo(variants=({"name": "a", "template": "ta"}, {"name": "b", "template": "tb"},
                        {"name": "rare", "template": "tb", "weight": 0.15}), holdout=0.2)
    engine = h.make_engine(database_url, settings, clock, [j], {"sms": h.RecordingChannel("sms")}, config=config(),
                           connectors={})
    try:
        mrns = population(engine, clock, 80)
        engine.dispatch_due()
        assigned = arms(engine)
        clock.advance(timedelta(days=3))
        for pid, arm in assigned.items():
            if arm == "b" or (arm != "rare" and pid % 3 == 0):
                engine.ingest(h.Events(clock, mrns[pid])("appointment.booked", {
                    "appointment_id": f"A{pid}", "start": (clock.now() + timedelta(days=2)).isoformat()}))
        clock.advance(timedelta(days=100))
        yield engine, Counter(assigned.values())
    finally:
        engine.close()


def test_leadership_sees_aggregate_outcomes_with_small_groups_withheld(trial, browser):
    engine, sizes = trial
    assert 1 <= sizes["rare"] < 5 and min(sizes[a] for a in ("a", "b", "holdout")) >= 5  # the population's shape
    with LiveApp(plugin_app(engine)) as live:
        browser.set_window_size(1100, 1000)
        log_in(browser, live.url, "ops", SECRETS["ops"])
        browser.get(f"{live.url}/staff/outcomes?journey=promo")
        table = browser.find_element(By.ID, "figures-offer").text
        for arm in ("a", "b", "holdout"):
            assert f"{arm}（n={sizes[arm]}）" in table
        assert "rare" not in table and "1 组人数少于 5" in browser.find_element(By.ID, "experiment-offer").text
        assert "re-visit within 30 days" in table
        lines = browser.find_element(By.ID, "comparisons-offer").text
        assert "b: re-visit within 30 days 100 % vs holdout" in lines and "rare" not in lines
        page = browser.page_source
        assert "王五" not in page and "139" not in page  # aggregate only: no patient named, no phone
        if SHOTS:
            browser.save_screenshot(os.path.join(SHOTS, "outcomes-page.png"))
        browser.delete_all_cookies()
        browser.get(f"{live.url}/staff/outcomes")
        assert browser.find_elements(By.ID, "login") and not browser.find_elements(By.ID, "figures-offer")
