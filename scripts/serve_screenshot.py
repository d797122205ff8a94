"""Take docs/serve.png: the page of `kgzsl serve` in headless Chromium, with a real prediction.

    python scripts/serve_screenshot.py runs/dgp docs/serve.png [--photo chelsea.png] [--labels "cat, dog, ..."]

Needs the serve and test extras and Debian's chromium + chromium-driver. The run is only read.
"""

from __future__ import annotations

import argparse
import io
import shutil
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from kgzsl.inference.classifier import ZeroShotClassifier
from kgzsl.serve.app import create_app
from kgzsl.serve.server import running_server
from kgzsl.vision.samples import demo_photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("out")
    parser.add_argument("--photo", default="chelsea.png")
    parser.add_argument("--labels", default="cat, dog, bear, fox, rocket, coffee")
    args = parser.parse_args()
    (photo,) = [p for p in demo_photos() if p.name == args.photo]
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=820,1240",
                "--hide-scrollbars"):
        options.add_argument(arg)
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(shutil.which("chromedriver")))
    try:
        with running_server(create_app(ZeroShotClassifier.load(args.run, device="cpu"))) as url:
            wait = WebDriverWait(browser, 300)
            browser.get(url)
            wait.until(lambda b: "classes" in b.find_element(By.ID, "run").text)
            browser.find_element(By.ID, "file").send_keys(str(photo))
            browser.find_element(By.ID, "labels").send_keys(args.labels)
            browser.find_element(By.ID, "go").click()
            why = browser.find_element(By.ID, "why-img")
            wait.until(lambda b: b.execute_script("return arguments[0].complete && arguments[0].naturalWidth", why))
            png = browser.get_screenshot_as_png()
    finally:
        browser.quit()
    # 256 colours keep the picture sharp and the file small
    Image.open(io.BytesIO(png)).convert("RGB").quantize(256).save(Path(args.out), optimize=True)
    print(f"{args.out}: {Path(args.out).stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
