"""Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by Selenium, for page tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
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


#: mermaid.min.js from the npm package ``mermaid`` (tests/js/fetch.sh puts it there; or CAREPATH_MERMAID_JS)
MERMAID_JS = Path(__file__).resolve().parent / "js" / "mermaid" / "mermaid.min.js"


def mermaid_js() -> Path:
    """mermaid.min.js from its npm package; the test is skipped, with the reason, where it has not been fetched."""
    path = Path(os.environ.get("CAREPATH_MERMAID_JS") or MERMAID_JS)
    if not path.is_file():
        pytest.skip(f"mermaid.js not found at {path}: run tests/js/fetch.sh (npm pack mermaid) "
                    "or set CAREPATH_MERMAID_JS")
    return path


class MermaidPage:
    """A blank page in headless Chromium with mermaid.js loaded, to render diagrams as a reader's browser does."""

    def __init__(self, driver, script: Path, folder: Path):
        page = folder / "mermaid.html"
        page.write_text(f'<!doctype html><meta charset="utf-8"><body><script src="{script.as_uri()}"></script>'
                        "<script>mermaid.initialize({startOnLoad: false, securityLevel: 'strict'});</script>",
                        encoding="utf-8")
        self.driver = driver
        driver.set_script_timeout(60)
        driver.get(page.as_uri())
        self.version = driver.execute_script("return window.mermaid ? (mermaid.version || 'loaded') : null")
        assert self.version, "mermaid.js did not load in the page"
        self._count = 0

    def render(self, text: str) -> dict:
        """``{"svg": ..., "nodes": [text of each node]}`` for a diagram mermaid parses and draws,
        ``{"error": ...}`` for one it refuses."""
        self._count += 1
        return self.driver.execute_async_script(
            "const [text, id, done] = arguments;"
            "mermaid.parse(text).then(() => mermaid.render(id, text)).then(r => {"
            "  const box = document.createElement('div'); box.innerHTML = r.svg; document.body.appendChild(box);"
            "  const nodes = Array.from(box.querySelectorAll('g.node')).map(n => n.textContent);"
            "  box.remove(); done({svg: r.svg, nodes: nodes});"
            "}).catch(e => done({error: String((e && e.message) || e)}));",
            text, f"diagram{self._count}")


def click_and_wait(browser, element_id: str, timeout: float = 15) -> None:  # noqa: ANN001
    """Click a button that submits a form, and wait until the next page has replaced this one.

    The old page counts as gone when its root element is stale; Chromium sometimes says so with an inspector
    error ("Node with given id does not belong to the document") instead of a stale-element error, which
    selenium's ``staleness_of`` lets through as a failure."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    old = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.ID, element_id).click()

    def replaced(_driver) -> bool:  # noqa: ANN001
        try:
            old.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    WebDriverWait(browser, timeout).until(replaced)
