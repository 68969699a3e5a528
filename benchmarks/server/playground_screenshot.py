"""The README's picture of the playground: a real `ganserve serve` of MODEL (a model folder or a
repository), the page in headless Chromium, a grid, an interpolation strip and a scored image;
for a model with an encoder, also an image projected (--project FILE, default the scored image)
and the strip interpolated from it.

    python -m benchmarks.server.playground_screenshot MODEL --out docs/playground.png [--project FILE]

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


def drop(driver, zone: str, data: bytes, name: str) -> None:
    """A file dropped on one of the page's drop zones, as drag and drop delivers it."""
    driver.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[1]), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], arguments[2], {type: "image/png"}));
        document.getElementById(arguments[0]).dispatchEvent(
            new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
    """, zone, base64.b64encode(data).decode(), name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2] / "docs" / "playground.png")
    parser.add_argument("--project", type=Path, help="a PNG or JPEG to project (a model with an encoder)")
    args = parse_args(parser)
    WORK.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{PORT}"
    server = Server("playground", [str(Path(sys.executable).parent / "ganserve"), "serve", str(args.model.resolve()),
                                   "--port", str(PORT), "--host", "127.0.0.1", "--workers", "1"], f"{base}/readyz")
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,1100", "--hide-scrollbars"):
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
            drop(driver, "drop", png, "seed1234.png")
            WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#scores .p-real"))
            if driver.find_element(By.ID, "project-panel").is_displayed():
                projected = args.project.read_bytes() if args.project else png
                drop(driver, "project-drop", projected, args.project.name if args.project else "seed1234.png")
                WebDriverWait(driver, 120).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#projection .psnr"))
                driver.find_element(By.ID, "project-interpolate").click()
                WebDriverWait(driver, 60).until(lambda d: "projected image" in d.find_element(By.ID, "status").text)
            driver.execute_script("window.scrollTo(0, 0)")  # a click may have scrolled the page
            time.sleep(0.5)  # let the images paint
            driver.save_screenshot(str(args.out))
        finally:
            driver.quit()
    finally:
        server.stop()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
