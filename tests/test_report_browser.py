"""Open a report in headless Chromium (Debian's ``chromium`` + ``chromium-driver``).

Checks: no console message at error level, no request except the file itself and its
data: thumbnails, the hostile caption shown as text with nothing executed, a screenshot.
"""

from __future__ import annotations

import json
import shutil

import pytest

from clipaudit.reports import write_report
from tests.report_support import HOSTILE, build_bias, build_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="Debian's chromium and chromium-driver are not installed "
    "(scripts/test.sh installs them)",
)


def _driver(window: str = "1200,1600"):  # type: ignore[no-untyped-def]
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={window}",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


def test_report_in_chromium(tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.getbasetemp() / "report-inputs"
    base.mkdir(exist_ok=True)
    run, bias = build_run(base), build_bias(base)
    out = tmp_path_factory.mktemp("browser")
    html = write_report([run, bias], out / "report.html").html
    driver = _driver()
    try:
        driver.get(html.resolve().as_uri())
        ready = driver.execute_script("return document.readyState")
        assert ready == "complete"
        # Nothing ran: the hostile caption's handlers would set this flag.
        assert driver.execute_script("return window.__pwned === undefined") is True
        body = driver.find_element("tag name", "body").text
        assert HOSTILE in body  # shown as text, whole
        assert driver.execute_script("return document.querySelectorAll('script').length") == 0
        hostile_imgs = "return document.querySelectorAll('img[src=\"x\"]').length"
        assert driver.execute_script(hostile_imgs) == 0
        n_thumbs = driver.execute_script(
            "return document.querySelectorAll('img[src^=\"data:image/jpeg\"]').length"
        )
        assert n_thumbs > 5
        assert driver.execute_script("return document.querySelectorAll('svg.chart').length") > 5
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
        requests = set()
        for entry in driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg["method"] == "Network.requestWillBeSent":
                requests.add(msg["params"]["request"]["url"])
        outside = {
            u for u in requests if not u.startswith("data:") and u != html.resolve().as_uri()
        }
        assert outside == set()
        shot = out / "report.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        driver.quit()
