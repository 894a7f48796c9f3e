"""The real page in headless Chromium (Debian's chromium + chromium-driver through Selenium).

Nothing is downloaded at run time: the driver path is given, so Selenium Manager never runs. Skips
with a message when the browser, its driver or selenium is missing (CI installs them; see .ci/run).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from label_helpers import PAIRS, write_pairs

from reward_models.labelling import LabelPair, LabelServer, LabelStore

CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if not (CHROMEDRIVER.exists() and CHROMIUM):
    pytest.skip(
        "browser tests need Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver",
        allow_module_level=True,
    )
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="browser tests need selenium: pip install selenium"
)
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1200,800",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout: float = 20.0):
    return WebDriverWait(driver, timeout).until(lambda d: condition(d))


def shown_pair(driver) -> str | None:
    task = driver.find_element(By.ID, "task")
    return task.get_attribute("data-pair-id") if task.is_displayed() else None


def wait_for_pair(driver, pair_id: str) -> dict[str, str]:
    _wait(driver, lambda d: shown_pair(d) == pair_id)
    script = "return document.getElementById(arguments[0]).textContent"
    return {key: driver.execute_script(script, key) for key in ("prompt", "left", "right")}


def sign_in(driver, url: str, name: str) -> None:
    driver.get(url)
    field = _wait(
        driver,
        lambda d: d.find_element(By.ID, "name") if d.find_element(By.ID, "login").is_displayed() else None,
    )
    field.send_keys(name)
    driver.find_element(By.ID, "start").click()


def press(driver, key: str) -> None:
    webdriver.ActionChains(driver).send_keys(key).perform()


def verdict_of(texts: dict[str, str], pair: LabelPair, side: str) -> str:
    """Which of the pair's responses (a or b) the page showed on ``side``."""
    return "a" if texts[side] == pair.a else "b"


def test_clicks_and_keys_answer_and_undo_and_answers_land_in_sqlite(tmp_path, browser):
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    with LabelServer(pairs, tmp_path / "labels.sqlite", port=0) as server:
        sign_in(browser, server.url, "ann")
        expected = []
        texts = wait_for_pair(browser, "p0")
        assert texts["prompt"] == PAIRS[0].prompt and {texts["left"], texts["right"]} == {
            PAIRS[0].a,
            PAIRS[0].b,
        }
        browser.find_element(By.CSS_SELECTOR, "button[data-choice='left']").click()
        expected.append(("p0", "left", verdict_of(texts, PAIRS[0], "left")))
        for pair, key, choice in [
            (PAIRS[1], "2", "right"),
            (PAIRS[2], Keys.ARROW_DOWN, "tie"),
            (PAIRS[3], "s", "skip"),
        ]:
            texts = wait_for_pair(browser, pair.id)
            press(browser, key)
            verdict = verdict_of(texts, pair, choice) if choice in ("left", "right") else choice
            expected.append((pair.id, choice, verdict))
        wait_for_pair(browser, "p4")
        assert "Saved (skipped)" in browser.find_element(By.ID, "status").text
        press(browser, "u")  # undo the skip: p3 comes back as it was shown
        again = wait_for_pair(browser, "p3")
        assert again == texts and "Undone" in browser.find_element(By.ID, "status").text
        expected.pop()
        assert [(a.pair_id, a.choice) for a in server.store.answers()] == [(p, c) for p, c, _ in expected]
        browser.find_element(By.CSS_SELECTOR, "button[data-choice='right']").click()
        expected.append(("p3", "right", verdict_of(texts, PAIRS[3], "right")))
        texts = wait_for_pair(browser, "p4")
        press(browser, Keys.ARROW_LEFT)
        expected.append(("p4", "left", verdict_of(texts, PAIRS[4], "left")))
        _wait(browser, lambda d: d.find_element(By.ID, "done").is_displayed())
        assert "Nothing left" in browser.find_element(By.ID, "done").text
        assert "You: 5 answered, 0 left" in browser.find_element(By.ID, "progress").text
    stored = LabelStore(tmp_path / "labels.sqlite").answers()
    assert [(a.pair_id, a.choice, a.verdict) for a in stored] == expected


def test_the_page_resumes_after_a_server_restart(tmp_path, browser):
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    db = tmp_path / "labels.sqlite"
    server = LabelServer(pairs, db, port=0)
    server.start()
    port = int(server.url.rsplit(":", 1)[1].strip("/"))
    try:
        sign_in(browser, server.url, "bob")
        for pair in PAIRS[:2]:
            wait_for_pair(browser, pair.id)
            press(browser, "1")
        on_screen = wait_for_pair(browser, "p2")
    finally:
        server.stop()
    with LabelServer(None, db, port=port) as restarted:  # same origin, so the page remembers the name
        browser.refresh()
        assert wait_for_pair(browser, "p2") == on_screen  # straight back to the pair, same order
        assert "You: 2 answered, 3 left" in browser.find_element(By.ID, "progress").text
        press(browser, "3")
        wait_for_pair(browser, "p3")
        assert [(a.pair_id, a.choice) for a in restarted.store.answers()] == [
            ("p0", "left"),
            ("p1", "left"),
            ("p2", "tie"),
        ]


HOSTILE = LabelPair(
    "evil",
    "<script>window.__pwned = 'prompt'</script>Review:",
    "<b>bold claim</b> <img src=x onerror=\"window.__pwned = 'img'\">",
    "</div><script>alert(1)</script><iframe src='https://example.org'></iframe>",
)


def test_model_output_is_shown_as_literal_text(tmp_path, browser):
    pairs = write_pairs(tmp_path / "pairs.jsonl", [HOSTILE])
    with LabelServer(pairs, tmp_path / "labels.sqlite", port=0) as server:
        sign_in(browser, server.url, "eve")
        texts = wait_for_pair(browser, "evil")
        assert texts["prompt"] == HOSTILE.prompt
        assert {texts["left"], texts["right"]} == {HOSTILE.a, HOSTILE.b}
        for element_id in ("prompt", "left", "right"):  # text only: not one element was created from it
            assert browser.find_elements(By.CSS_SELECTOR, f"#{element_id} *") == []
        assert (
            browser.find_elements(By.TAG_NAME, "img") == []
            and browser.find_elements(By.TAG_NAME, "iframe") == []
        )
        assert browser.find_elements(By.CSS_SELECTOR, "main b") == []
        scripts = [s.get_attribute("src") for s in browser.find_elements(By.TAG_NAME, "script")]
        assert scripts == [server.url.rstrip("/") + "/static/app.js"]
        assert browser.execute_script("return window.__pwned === undefined")
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018
        assert "&lt;" not in browser.find_element(By.ID, "left").text  # not double-escaped either
        assert "<b>bold claim</b>" in browser.find_element(By.CSS_SELECTOR, ".responses").text
