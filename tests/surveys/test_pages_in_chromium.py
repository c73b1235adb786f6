"""The survey page and the staff page, driven in headless Chromium over a real uvicorn."""

from __future__ import annotations

import os

import pytest
from selenium.webdriver.common.by import By

from carepath.store.schema import StaffTask, TaskNote
from tests.browser import chromium, click_and_wait
from tests.engine import helpers as h
from tests.surveys.conftest import STAFF_TOKEN

browser = pytest.fixture(chromium)
SHOTS = os.environ.get("CAREPATH_SCREENSHOTS")  # a folder: save what the pages look like (for docs/)


def shot(browser, name: str) -> None:
    if SHOTS:
        browser.save_screenshot(os.path.join(SHOTS, name))


def test_a_patient_answers_3_of_10_and_staff_close_the_complaint(visit, live, browser):
    token = visit.invite()
    browser.get(f"{live.url}/s/{token}")
    assert "门诊就诊满意度调查" in browser.find_element(By.TAG_NAME, "h1").text
    browser.find_element(By.CSS_SELECTOR, "input[name=nps][value='3']").click()
    browser.find_element(By.CSS_SELECTOR, "input[name=satisfaction][value='2']").click()
    browser.find_element(By.CSS_SELECTOR, "input[name=wait][value='too-long']").click()
    browser.find_element(By.NAME, "comment").send_keys("候诊时间太长")
    shot(browser, "survey-page.png")
    click_and_wait(browser, "submit")
    assert browser.find_element(By.ID, "notice").get_attribute("data-state") == "thanks"
    visit.engine.dispatch_due()
    complaint = next(t for t in h._rows(visit.engine, StaffTask) if t.kind == "complaint_case")  # a complaint case
    assert complaint.first_response_due_at - complaint.created_at == __import__("datetime").timedelta(hours=24)

    browser.get(f"{live.url}/staff")
    browser.find_element(By.ID, "name").send_keys("wang-li")
    browser.find_element(By.ID, "token").send_keys(STAFF_TOKEN)
    click_and_wait(browser, "login")
    listing = browser.find_element(By.ID, "tasks").text
    assert "complaint" in listing and "13912345678" not in listing and "李*" in listing
    assert "首次响应" in listing  # which deadline: nobody has claimed it yet
    shot(browser, "staff-list.png")
    click_and_wait(browser, f"task-{complaint.id}")
    assert browser.find_element(By.ID, "phone").text == "139****5678"  # opened: masked until she asks
    click_and_wait(browser, "reveal")
    assert browser.find_element(By.ID, "phone").text == "13912345678"  # the nurse needs the number (audited)
    # what the patient said and scored, beside the task
    assert browser.find_element(By.ID, "survey-nps").text == "3"
    assert browser.find_element(By.ID, "survey-satisfaction").text == "2.0"
    answers = browser.find_element(By.ID, "survey-answers").text
    assert "候诊时间太长" in answers and "您有多大可能向亲友推荐本院" in answers
    shot(browser, "staff-task.png")
    click_and_wait(browser, "claim")
    assert browser.find_element(By.ID, "deadline").text.startswith("处理完成")  # claimed: the resolution counts now
    browser.find_element(By.ID, "note-text").send_keys("已致电，患者接受道歉")
    click_and_wait(browser, "add-note")
    browser.find_element(By.ID, "resolution").send_keys("安排专人陪诊")
    click_and_wait(browser, "close")
    assert browser.find_element(By.ID, "status").text == "done"
    task = next(t for t in h._rows(visit.engine, StaffTask) if t.id == complaint.id)
    assert (task.status, task.claimed_by, task.resolution) == ("done", "wang-li", "安排专人陪诊")
    assert [n.text for n in h._rows(visit.engine, TaskNote)] == ["已致电，患者接受道歉"]


def test_a_wrong_login_token_shows_no_task(visit, live, browser):
    browser.get(f"{live.url}/staff")
    browser.find_element(By.ID, "name").send_keys("wang-li")
    browser.find_element(By.ID, "token").send_keys("not-a-staff-token-at-all")
    click_and_wait(browser, "login")
    assert "令牌无效" in browser.page_source
    assert browser.find_elements(By.ID, "tasks") == []
