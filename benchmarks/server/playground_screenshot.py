"""The README's picture of the playground: a real `ganserve serve` of MODEL (a model folder or a
repository), the page in headless Chromium, a grid, an interpolation strip and a scored image.

    python -m benchmarks.server.playground_screenshot MODEL --out docs/playground.png

Needs Debian's chromium and chromium-driver.
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from pathlib import Path

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from benchmarks.common import WORK, parse_args
from benchmarks.server.http_bench import Server

PORT = 3123


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2] / "docs" / "playground.png")
    args = parse_args(parser)
    WORK.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{PORT}"
    server = Server("playground", [str(Path(sys.executable).parent / "ganserve"), "serve", str(args.model.resolve()),
                                   "--port", str(PORT), "--host", "127.0.0.1", "--workers", "1"], f"{base}/readyz")
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,1000", "--hide-scrollbars"):
        options.add_argument(flag)
    try:
        server.wait_ready()
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            driver.get(base + "/")
            WebDriverWait(driver, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#grid img")) == 16)
            driver.find_element(By.ID, "interpolate").click()
            WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#strip img"))
            png = httpx.post(f"{base}/generate", json={"seed": 1234}).content
            driver.execute_script("""
                const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
                const transfer = new DataTransfer();
                transfer.items.add(new File([bytes], "seed1234.png", {type: "image/png"}));
                document.getElementById("drop").dispatchEvent(
                    new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
            """, base64.b64encode(png).decode())
            WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#scores .p-real"))
            time.sleep(0.5)  # let the images paint
            driver.save_screenshot(str(args.out))
        finally:
            driver.quit()
    finally:
        server.stop()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
