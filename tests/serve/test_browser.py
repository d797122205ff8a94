"""The page in a real browser: headless Chromium (Debian chromium + chromium-driver) through Selenium.

The server runs in a thread on a free port; the test uploads a bundled photo, types labels with the
help of the suggestions, and reads the scores, the synsets and the explanation from the page. It
skips, saying why, where Chromium is not installed (``make test`` installs it when apt is usable).
"""

from __future__ import annotations

import os
import shutil

import pytest

from serve_helpers import photo, tiny_classifier

selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from kgzsl.inference.classifier import ZeroShotClassifier  # noqa: E402
from kgzsl.serve.app import create_app  # noqa: E402
from kgzsl.serve.server import running_server  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        pytest.skip("headless Chromium is not installed: apt-get install chromium chromium-driver "
                    "(make test installs them when apt is usable)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=900,1300"):
        options.add_argument(arg)
    # the profile and Chromium's singleton socket folder in pytest's temporary folder, not left in /tmp
    scratch = tmp_path_factory.mktemp("chromium")
    options.add_argument(f"--user-data-dir={scratch / 'profile'}")
    env = {**os.environ, "TMPDIR": str(scratch)}
    # an explicit driver path: Selenium never looks for (or downloads) a browser or driver
    chrome = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=driver, env=env))
    yield chrome
    chrome.quit()


def _text(browser, selector: str) -> list[str]:
    return [e.text for e in browser.find_elements(By.CSS_SELECTOR, selector)]


def test_classify_a_photo_on_the_page(browser, tiny_run):
    wait = WebDriverWait(browser, 60)
    with running_server(create_app(tiny_classifier(tiny_run))) as url:
        browser.get(url)
        wait.until(lambda b: "efficientnet-lite0" in b.find_element(By.ID, "run").text)
        browser.find_element(By.ID, "file").send_keys(str(photo("chelsea.png")))
        labels = browser.find_element(By.ID, "labels")
        labels.send_keys("tabby, tench, airl")
        wait.until(lambda b: any(t.startswith("airliner") for t in _text(b, "#suggestions li")))
        labels.send_keys(Keys.ARROW_DOWN, Keys.ENTER)  # takes the suggestion
        assert labels.get_attribute("value") == "tabby, tench, airliner, "
        browser.find_element(By.ID, "go").click()
        wait.until(lambda b: _text(b, "#results .label"))
        assert _text(browser, "#results .label")[0] == "tabby"
        assert sorted(_text(browser, "#results .label")) == ["airliner", "tabby", "tench"]
        assert _text(browser, "#results .synset")[0] == "tabby.n.01 (n02123045)"
        assert not browser.find_element(By.ID, "none").is_displayed()
        why = wait.until(ec.visibility_of_element_located((By.ID, "why-img")))
        wait.until(lambda b: b.execute_script("return arguments[0].complete && arguments[0].naturalWidth", why) > 0)
        assert "tabby" in browser.find_element(By.ID, "why-caption").text

        labels.clear()
        labels.send_keys("tabby, catt")  # an unknown label: the server's message, close matches included
        browser.find_element(By.ID, "go").click()
        wait.until(lambda b: "did you mean" in b.find_element(By.ID, "status").text)
        assert browser.find_element(By.ID, "status").get_attribute("class") == "error"
        assert _text(browser, "#results .label") == []


def test_none_of_these_on_a_calibrated_run(browser, tiny_run):
    clf = tiny_classifier(tiny_run)
    calibrated = ZeroShotClassifier.load(tiny_run, device="cpu", backbone=clf.backbone)
    calibrated.set_abstain({"threshold": 1e6})  # no logit reaches it
    wait = WebDriverWait(browser, 60)
    with running_server(create_app(calibrated)) as url:
        browser.get(url)
        wait.until(lambda b: "efficientnet-lite0" in b.find_element(By.ID, "run").text)
        browser.find_element(By.ID, "file").send_keys(str(photo("chelsea.png")))
        browser.find_element(By.ID, "labels").send_keys("tabby, tench")
        browser.find_element(By.ID, "go").click()
        wait.until(lambda b: _text(b, "#results .label"))
        assert browser.find_element(By.ID, "none").is_displayed()
        assert "none of these" in browser.find_element(By.ID, "none").text


def test_the_newest_answer_wins_and_the_explanation_is_of_the_synset_predicted(browser, tiny_run):
    import time

    app = create_app(tiny_classifier(tiny_run))
    service = app.state.service
    predict, explain, explained = service.predict, service.explain, []

    def slow_for_tench(image, parameters):  # the first request answers last
        if "tench" in str(parameters.get("candidate_labels")):
            time.sleep(3)
        return predict(image, parameters)

    service.predict = slow_for_tench
    service.explain = lambda image, parameters: explained.append(parameters["label"]) or explain(image, parameters)
    wait = WebDriverWait(browser, 60)
    with running_server(app) as url:
        browser.get(url)
        wait.until(lambda b: "efficientnet-lite0" in b.find_element(By.ID, "run").text)
        browser.find_element(By.ID, "file").send_keys(str(photo("chelsea.png")))
        labels = browser.find_element(By.ID, "labels")
        labels.send_keys("tabby, tench")
        browser.find_element(By.ID, "go").click()
        labels.clear()
        labels.send_keys("tabby, airliner", Keys.ESCAPE)
        browser.find_element(By.ID, "go").click()
        wait.until(lambda b: sorted(_text(b, "#results .label")) == ["airliner", "tabby"])
        time.sleep(4)  # the slow first answer has arrived by now, and is not shown
        assert sorted(_text(browser, "#results .label")) == ["airliner", "tabby"]
        wait.until(lambda b: b.find_element(By.ID, "why").is_displayed())
        assert explained == ["tabby.n.01"]  # the synset the prediction named, not the word "tabby"


def test_keyboard_and_narrow_screens(browser, tiny_run):
    wait = WebDriverWait(browser, 60)
    with running_server(create_app(tiny_classifier(tiny_run))) as url:
        browser.get(url)
        wait.until(lambda b: "efficientnet-lite0" in b.find_element(By.ID, "run").text)
        # Enter on the drop zone opens the file chooser (its click is caught here: headless has no dialog)
        browser.execute_script("window.chooser = 0; document.getElementById('file').addEventListener('click', "
                               "(e) => { window.chooser += 1; e.preventDefault(); });")
        browser.find_element(By.ID, "drop").send_keys(Keys.ENTER)
        assert browser.execute_script("return window.chooser") == 1
        # the suggestions never cover the button: a click there classifies
        browser.find_element(By.ID, "file").send_keys(str(photo("chelsea.png")))
        browser.find_element(By.ID, "preview").click()  # anywhere in the drop zone opens the chooser
        assert browser.execute_script("return window.chooser") == 2
        browser.find_element(By.ID, "labels").send_keys("tabby, tench, airl")
        wait.until(lambda b: any(t.startswith("airliner") for t in _text(b, "#suggestions li")))
        assert browser.execute_script("const r = document.getElementById('go').getBoundingClientRect(); "
                                      "return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2).id"
                                      ) == "go"
        try:
            browser.set_window_size(375, 812)  # a phone: Top and Classify wrap under the labels, still uncovered
            browser.find_element(By.ID, "labels").send_keys(Keys.BACKSPACE, "l")
            wait.until(lambda b: b.find_element(By.ID, "suggestions").is_displayed())
            assert browser.execute_script(
                "const r = document.getElementById('go').getBoundingClientRect(); "
                "return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2).id") == "go"
            browser.find_element(By.ID, "labels").send_keys(Keys.ESCAPE, "iner")  # every score in view, and its bar
            browser.find_element(By.ID, "go").click()
            wait.until(lambda b: len(_text(b, "#results .label")) == 3)
            width = browser.execute_script("return document.documentElement.clientWidth")
            for score in browser.find_elements(By.CSS_SELECTOR, "#results .score"):
                assert score.rect["x"] + score.rect["width"] <= width and score.text.endswith("%")
            assert all(bar.rect["width"] > 100 for bar in browser.find_elements(By.CSS_SELECTOR, "#results .bar"))
        finally:
            browser.set_window_size(900, 1300)
