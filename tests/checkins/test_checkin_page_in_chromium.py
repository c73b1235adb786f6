"""Issue 19.4: the signed check-in page of a prompt's link, driven in headless Chromium over a real uvicorn."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import requests
from selenium.webdriver.common.by import By
from sqlalchemy import select

from carepath.definition.journey_files import read_journey_text
from carepath.store.schema import CheckinRow
from carepath.web.app import create_app
from tests.browser import chromium, click_and_wait
from tests.engine import helpers as h
from tests.live_app import LiveApp
from tests.programmes.conftest import at_local, local

browser = pytest.fixture(chromium)
CAMP = """
name: bp-camp
enroll: {events: [visit.checked_in]}
templates:
  prompt: "请测量今天的血压并打卡：{{ checkin.link }}"
  nudge: "今天还没有打卡哦。"
steps:
  - id: bp
    stage: post_visit
    every: {interval: 1d, at: "08:00"}
    missed: skip
    checkin: {checkin: home-bp, measure: blood_pressure, template: prompt, via: [sms]}
  - id: nudge
    stage: post_visit
    after_step: {step: bp, delay: 4h, unless: checked_in}
    send: {template: nudge, via: [sms]}
"""


@pytest.fixture
def journeys():
    journey, problems = read_journey_text(CAMP, known_channels={"sms"})
    assert problems == [], problems
    return [journey]


@pytest.fixture
def live(eng):
    with LiveApp(create_app(eng, connectors={})) as running:
        yield running


def submit(browser) -> None:
    click_and_wait(browser, "submit")


def test_a_patient_checks_in_on_the_page_once_and_gets_no_nudge(eng, clock, live, browser):
    eng.ingest(h.Events(clock)("visit.checked_in", {"department": "心内科"}))
    day = local(clock.now()).date() + timedelta(days=1)
    clock.set(at_local(day, 8, 1))
    eng.dispatch_due()
    [prompt] = [m.body for m in eng.sms.messages]
    token = re.search(r"/k/(\S+)", prompt).group(1)

    browser.get(f"{live.url}/k/{token}")
    assert browser.find_element(By.TAG_NAME, "h1").text == "今日打卡：血压"
    browser.find_element(By.ID, "systolic_bp").send_keys("400")
    browser.find_element(By.ID, "diastolic_bp").send_keys("95")
    submit(browser)
    assert "超出可能范围" in browser.find_element(By.ID, "problem").text  # shown again, nothing stored
    with eng.db.connect() as conn:
        assert conn.execute(select(CheckinRow.id)).all() == []
    field = browser.find_element(By.ID, "systolic_bp")
    field.clear()
    field.send_keys("148")
    submit(browser)
    assert browser.find_element(By.ID, "notice").get_attribute("data-state") == "thanks"

    browser.get(f"{live.url}/k/{token}")  # the link is used up
    assert browser.find_element(By.ID, "notice").get_attribute("data-state") == "done"
    forged = token[:-2] + ("aa" if not token.endswith("aa") else "bb")
    browser.get(f"{live.url}/k/{forged}")
    assert browser.find_element(By.ID, "notice").get_attribute("data-state") == "invalid"
    assert requests.post(f"{live.url}/k/{forged}", data={"systolic_bp": "120", "diastolic_bp": "80"},
                         timeout=10).status_code == 404

    with eng.db.connect() as conn:
        [row] = conn.execute(select(CheckinRow.__table__)).all()
    assert (row.source, row.status, row.day, row.measure, row.unit) == ("page", "recorded", day, "blood_pressure",
                                                                      "mmHg")
    assert eng.cipher.decrypt(row.value_enc) == "148/95"
    clock.set(at_local(day, 12, 5))
    eng.dispatch_due()
    assert h.one_touchpoint(eng, step="nudge").reason == "skipped: patient checked in"


def test_a_home_cuff_reading_counts_as_the_days_check_in(eng, clock):
    eng.ingest(h.Events(clock)("visit.checked_in", {"department": "心内科"}))
    day = local(clock.now()).date() + timedelta(days=1)
    clock.set(at_local(day, 8, 1))
    eng.dispatch_due()
    ev = h.Events(clock, source="device:cuff")
    measured = at_local(day, 8, 30)
    for kind, value in (("systolic_bp", 136), ("diastolic_bp", 84)):  # one moment, two events
        eng.ingest(ev("vitals.reading", {"kind": kind, "value": value, "unit": "mmHg"}, occurred_at=measured))
    eng.ingest(ev("vitals.reading", {"kind": "systolic_bp", "value": 131, "unit": "mmHg"},
                  occurred_at=measured + timedelta(hours=2)))  # a second moment that day: no second check-in
    with eng.db.connect() as conn:
        rows = conn.execute(select(CheckinRow.__table__)).all()
    assert [(r.source, r.day, eng.cipher.decrypt(r.value_enc)) for r in rows] == [("device", day, "136/84")]
    clock.set(at_local(day, 12, 5))
    eng.dispatch_due()
    assert h.one_touchpoint(eng, step="nudge").reason == "skipped: patient checked in"
