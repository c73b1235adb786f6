"""Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by Selenium, for page tests."""

from __future__ import annotations

import shutil
from typing import Iterator

import pytest


def chromium() -> Iterator[object]:
    """A headless Chromium WebDriver; the test is skipped, with the reason, where none is installed."""
    browser, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("headless Chromium not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=420,900", "--lang=zh-CN"):
        options.add_argument(flag)
    session = webdriver.Chrome(service=Service(driver), options=options)
    session.set_page_load_timeout(30)
    try:
        yield session
    finally:
        session.quit()
