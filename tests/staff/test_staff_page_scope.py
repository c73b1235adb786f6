"""A nurse of ward A on the staff page in headless Chromium: ward B's tasks and contacts stay out of reach."""

from __future__ import annotations

import pytest
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import select

from carepath.store.schema import AuditEntry
from tests.browser import chromium
from tests.staff.conftest import PHONE_A, PHONE_B, SECRETS

browser = pytest.fixture(chromium)


def replaced(old):
    """A wait condition: the page that held ``old`` is gone and the next one has loaded (Chromium's inspector
    may answer with an error while it navigates: asked again)."""
    def check(driver) -> bool:
        try:
            old.is_enabled()
            return False
        except StaleElementReferenceException:
            return driver.execute_script("return document.readyState") == "complete"
        except WebDriverException:
            return False
    return check


def submit(browser, element_id: str) -> None:
    """Click a button that submits a form and wait for the next page."""
    old = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.ID, element_id).click()
    WebDriverWait(browser, 15).until(replaced(old))


def log_in(browser, url: str, name: str, secret: str) -> None:
    browser.get(f"{url}/staff")
    browser.find_element(By.ID, "name").send_keys(name)
    browser.find_element(By.ID, "token").send_keys(secret)
    submit(browser, "login")


def post_from_page(browser, path: str) -> None:
    """Post an empty form to ``path`` from the page, as a crafted request would (no button leads there)."""
    old = browser.find_element(By.TAG_NAME, "html")
    browser.execute_script("const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0];"
                           "document.body.appendChild(f); f.submit();", path)
    WebDriverWait(browser, 15).until(replaced(old))


def contact_views(engine) -> list[tuple[str, str]]:
    with engine.db.connect() as conn:
        return [(r.actor, r.entity_id) for r in conn.execute(
            select(AuditEntry.actor, AuditEntry.entity_id).where(AuditEntry.action == "patient.contact_viewed"))]


def test_a_ward_a_nurse_sees_and_unmasks_only_ward_a(ward, live, browser):
    log_in(browser, live.url, "nurse-a", SECRETS["nurse-a"])
    listing = browser.find_element(By.ID, "tasks").text
    assert browser.find_elements(By.ID, f"task-{ward.task_a}")
    assert not browser.find_elements(By.ID, f"task-{ward.task_b}")
    assert "张*" in listing and "李*" not in listing and "ward-b" not in browser.page_source

    # her own task: masked until she asks, then in clear and audit-logged
    submit(browser, f"task-{ward.task_a}")
    assert browser.find_element(By.ID, "phone").text == "138****1234"
    assert contact_views(ward.engine) == []
    submit(browser, "reveal")
    assert browser.find_element(By.ID, "phone").text == PHONE_A
    assert contact_views(ward.engine) == [("staff:nurse-a", str(ward.patient_a))]

    # ward B's task: refused whether she opens it, unmasks it or acts on it
    browser.get(f"{live.url}/staff/tasks/{ward.task_b}")
    assert "无权限" in browser.page_source and "ward-b" in browser.page_source
    for path in (f"/staff/tasks/{ward.task_b}/reveal", f"/staff/tasks/{ward.task_b}/claim"):
        post_from_page(browser, path)
        assert "无权限" in browser.page_source, path
        assert PHONE_B not in browser.page_source and "李*" not in browser.page_source
    assert contact_views(ward.engine) == [("staff:nurse-a", str(ward.patient_a))]  # no look at 李四 recorded
    assert browser.find_elements(By.ID, "phone") == []


def test_operations_see_every_ward_masked_and_change_nothing(ward, live, browser):
    log_in(browser, live.url, "ops", SECRETS["ops"])
    assert browser.find_elements(By.ID, f"task-{ward.task_a}") and browser.find_elements(By.ID, f"task-{ward.task_b}")
    submit(browser, f"task-{ward.task_b}")
    assert browser.find_element(By.ID, "phone").text == "139****2222"
    assert browser.find_elements(By.ID, "reveal") == [] and browser.find_elements(By.ID, "claim") == []
    post_from_page(browser, f"/staff/tasks/{ward.task_b}/reveal")
    assert "无权限" in browser.page_source and PHONE_B not in browser.page_source
    assert contact_views(ward.engine) == []


def test_a_wrong_secret_shows_no_task(ward, live, browser):
    log_in(browser, live.url, "nurse-a", SECRETS["nurse-b"])  # another member's secret is not hers
    assert "姓名或令牌无效" in browser.page_source
    assert browser.find_elements(By.ID, "tasks") == []
