"""The upload page in a real browser: Debian's chromium, headless, driven by chromedriver.

Two files are chosen, the service is stopped while they upload and started again; the
page retries, resumes each file at the offset the service acknowledged (no upload starts
over) and both land intact. A screenshot is kept as an artefact (its path is printed).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .conftest import TOKENS, Intake

MiB = 1 << 20
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path: Path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("chromium and chromium-driver are not installed: run scripts/setup-dev.sh")
    os.environ["SE_OFFLINE"] = "true"  # selenium must never download a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--user-data-dir={tmp_path / 'profile'}", "--window-size=900,700"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def _state(driver, row: str) -> str | None:
    from selenium.common.exceptions import NoSuchElementException

    try:
        return driver.find_element("id", row).get_attribute("data-state")
    except NoSuchElementException:
        return None


@pytest.mark.slow
def test_page_uploads_two_files_and_resumes_across_a_restart(tmp_path: Path, browser) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    svc = Intake(tmp_path, max_file_size="1GiB")
    svc.start()
    try:
        files = {"first.bin": os.urandom(48 * MiB), "second.bin": os.urandom(40 * MiB)}
        for name, data in files.items():
            (tmp_path / name).write_bytes(data)
        wait = WebDriverWait(browser, 120, poll_frequency=0.02)
        browser.get(svc.url + "/?chunk=1048576")  # 1 MiB chunks: many acknowledged offsets
        browser.find_element("id", "token").send_keys(TOKENS["alice"])
        browser.find_element("id", "files").send_keys(
            "\n".join(str(tmp_path / n) for n in files))
        wait.until(lambda d: float(d.find_element("css selector", "#file-0 progress")
                                   .get_attribute("value") or 0) > 0)
        svc.stop()  # mid-upload, and the socket too: the page's connections fail
        svc.stop_socket()
        unfinished = list((svc.state / "uploads").glob("*.json"))
        assert unfinished, "both files were done before the stop; the test proved nothing"
        wait.until(lambda d: "retrying" in (_state(d, "file-0"), _state(d, "file-1")))
        browser.save_screenshot(str(tmp_path / "intake-page-retrying.png"))
        svc.start()
        wait.until(lambda d: _state(d, "file-0") == _state(d, "file-1") == "done")
        shot = tmp_path / "intake-page.png"
        browser.save_screenshot(str(shot))
        print(f"\nupload page screenshots: {shot} and {tmp_path / 'intake-page-retrying.png'}")
        assert svc.waiting() == files
        log = svc.log()
        assert log.count("started a resumable upload") == 2  # resumed, never started again
        assert log.count("alice sent first.bin") == log.count("alice sent second.bin") == 1
        status = browser.find_element("css selector", "#file-0 .status").text
        assert status == "stored as first.bin"
        problems = [e for e in browser.get_log("browser")
                    if "Content Security Policy" in e["message"]]
        assert problems == []
    finally:
        svc.close()


def test_page_takes_dropped_files(tmp_path: Path, browser, intake: Intake) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(intake.url + "/")
    browser.find_element("id", "token").send_keys(TOKENS["bob"])
    browser.execute_script("""
        const dt = new DataTransfer();
        dt.items.add(new File(["dropped by drag and drop\\n"], "dropped.txt"));
        document.getElementById("drop").dispatchEvent(
            new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
    """)
    WebDriverWait(browser, 60, poll_frequency=0.02).until(lambda d: _state(d, "file-0") == "done")
    assert intake.waiting("bob") == {"dropped.txt": b"dropped by drag and drop\n"}
    browser.find_element("id", "token").clear()
    browser.find_element("id", "token").send_keys("not-a-token")
    browser.execute_script("""
        const dt = new DataTransfer();
        dt.items.add(new File(["x"], "refused.txt"));
        document.getElementById("drop").dispatchEvent(
            new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
    """)
    WebDriverWait(browser, 60, poll_frequency=0.02).until(lambda d: _state(d, "file-1") == "failed")
    status = browser.find_element("css selector", "#file-1 .status").text
    assert status == "the token was not accepted"
    assert intake.waiting("bob") == {"dropped.txt": b"dropped by drag and drop\n"}


@pytest.mark.slow
def test_page_resumes_a_file_chosen_again_after_a_reload(tmp_path: Path, browser) -> None:  # noqa: ANN001
    """The upload URL is kept in localStorage: the same file chosen again on a reloaded page
    continues the unfinished upload instead of starting another."""
    from selenium.webdriver.support.ui import WebDriverWait

    svc = Intake(tmp_path, max_file_size="1GiB")
    svc.start()
    try:
        data = os.urandom(48 * MiB)
        path = tmp_path / "again.bin"
        path.write_bytes(data)
        wait = WebDriverWait(browser, 120, poll_frequency=0.02)
        browser.get(svc.url + "/?chunk=1048576")
        browser.find_element("id", "token").send_keys(TOKENS["alice"])
        browser.find_element("id", "files").send_keys(str(path))
        wait.until(lambda d: float(d.find_element("css selector", "#file-0 progress")
                                   .get_attribute("value") or 0) > 0)
        svc.stop()
        svc.stop_socket()
        assert list((svc.state / "uploads").glob("*.json")), "done before the stop"
        browser.get("about:blank")  # the page is gone, and with it every request
        svc.start()
        browser.get(svc.url + "/?chunk=1048576")  # the token is kept for the tab
        browser.find_element("id", "files").send_keys(str(path))
        wait.until(lambda d: _state(d, "file-0") == "done")
        assert svc.waiting() == {"again.bin": data}
        assert svc.log().count("started a resumable upload") == 1
    finally:
        svc.close()
