"""Headless Chromium (Debian's `chromium` and `chromium-driver`) driven by Selenium, for
the dashboard and report tests: pages load as a user's browser loads them, the charts
are drawn by plotly.js, and the console is read for errors."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
DRIVER = "chromedriver"


def _find(names: tuple[str, ...]) -> str | None:
    return next((p for n in names if (p := shutil.which(n))), None)


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    browser, driver = _find(CHROMIUM), _find((DRIVER,))
    if browser is None or driver is None:
        pytest.fail(
            "the browser tests need Chromium and its driver: "
            "apt-get install chromium chromium-driver (.ci/run and make test do it as root)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1800",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(driver), options=options)
    d.set_page_load_timeout(60)
    try:
        yield d
    finally:
        d.quit()


def open_page(d: webdriver.Chrome, url: str, charts: int, timeout: float = 30) -> None:
    """Load `url` and wait until `charts` Plotly charts are drawn (each one's SVG
    holds a drawn trace)."""
    d.get(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        drawn = d.execute_script(
            "return document.readyState === 'complete' ? Array.from("
            "document.querySelectorAll('.plotly-graph-div')).filter("
            "g => g._fullLayout && g.querySelector('svg.main-svg .trace, svg.main-svg .hm'))"
            ".length : -1"
        )
        if drawn >= charts:
            return
        time.sleep(0.1)
    raise AssertionError(f"{url}: {charts} chart(s) not drawn in {timeout} s (drawn: {drawn})")


def console_errors(d: webdriver.Chrome) -> list[dict[str, Any]]:
    return [e for e in d.get_log("browser") if e["level"] == "SEVERE"]


def chart_data(d: webdriver.Chrome, div_id: str) -> list[dict[str, Any]]:
    """The traces a chart draws, as plotly.js holds them (names and numbers)."""
    return d.execute_script(
        "const g = document.getElementById(arguments[0]);"
        "return g.data.map(t => ({name: t.name, type: t.type,"
        " x: t.x ? Array.from(t.x) : null, y: t.y ? Array.from(t.y) : null,"
        " z: t.z ? Array.from(t.z, r => Array.from(r)) : null,"
        " customdata: t.customdata ? Array.from(t.customdata) : null}));",
        div_id,
    )


def svg_marks(d: webdriver.Chrome, div_id: str) -> int:
    """How many drawn marks (points, bars, lines, heatmap images) a chart's SVG holds."""
    return d.execute_script(
        "return document.getElementById(arguments[0]).querySelectorAll("
        "'svg.main-svg .point, svg.main-svg path.js-line, svg.main-svg image').length;",
        div_id,
    )


def screenshot(d: webdriver.Chrome, path: Path) -> Path:
    """A screenshot of the whole page (the window made as tall as the page first)."""
    height = d.execute_script("return document.documentElement.scrollHeight")
    d.set_window_size(1400, max(900, min(int(height), 6000)))
    time.sleep(0.3)
    d.save_screenshot(str(path))
    d.set_window_size(1400, 1800)
    return path
