"""The playground page in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`) driven by Selenium against a real `ganserve serve` with API keys on."""

import base64
import io
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from serving.engine import Engine
from serving.formats.images import encode_png
from tests.conftest import ganserve_serve

pytestmark = pytest.mark.slow
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
KEY = "playground-test-key-0123456789ab"
if CHROMIUM is None or DRIVER is None:
    pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run "
                "installs them)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def page(encoder_model_dir, tmp_path_factory):
    """The playground of a model with an encoder, so every panel shows."""
    work = tmp_path_factory.mktemp("playground")
    (work / "keys").write_text(KEY + "\n")
    options = Options()
    options.binary_location = CHROMIUM
    # no network but the server's: the background services Chromium would reach out to are off
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={work / 'chromium'}", "--window-size=1280,900"):
        options.add_argument(flag)
    with ganserve_serve(encoder_model_dir, work, "--workers", "1", "--api-key-file", str(work / "keys")) as base:
        driver = webdriver.Chrome(service=Service(DRIVER), options=options)
        try:
            driver.get(base + "/")
            yield driver
        finally:
            driver.quit()


def _wait(driver, condition, timeout=30):
    return WebDriverWait(driver, timeout).until(condition)


def _status(driver) -> str:
    return driver.find_element(By.ID, "status").text


def _enter_key(driver, key: str) -> None:
    field = driver.find_element(By.ID, "key")
    field.clear()
    field.send_keys(key, Keys.TAB)  # the change event: the page starts again with the key


def test_without_a_key_the_page_says_what_the_server_answered(page):
    _wait(page, lambda d: "401" in _status(d))
    assert "this server needs an API key" in _status(page) and "Enter a key in the API key field" in _status(page)
    _enter_key(page, "wrong-key-0123456789abcdef")
    time.sleep(0.5)
    _wait(page, lambda d: "401" in _status(d))
    assert not page.find_elements(By.CSS_SELECTOR, "#grid img")


def test_with_the_key_it_opens_on_a_grid_and_draws_the_seed_asked_for(page, encoder_model_dir):
    _enter_key(page, KEY)
    _wait(page, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#grid img")) == 16)
    card = page.find_element(By.ID, "card").text
    assert "tiny" in card and "8×8×1 uint8" in card
    for field, value in (("seed", "42"), ("count", "1")):
        page.find_element(By.ID, field).clear()
        page.find_element(By.ID, field).send_keys(value)
    page.find_element(By.ID, "generate").click()
    image = _wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, '#grid img[data-seed="42"]'))[0]
    png = base64.b64decode(image.get_attribute("src").removeprefix("data:image/png;base64,"))
    assert png == encode_png(Engine(encoder_model_dir, warmup=False).generate([42])[0])  # the seed's own pixels


def _drop(driver, zone: str, png: bytes, name: str) -> None:
    """A file dropped on a drop zone, as a user's drag and drop delivers it."""
    driver.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[1]), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], arguments[2], {type: "image/png"}));
        const drop = new DragEvent("drop", {dataTransfer: transfer, bubbles: true});
        document.getElementById(arguments[0]).dispatchEvent(drop);
    """, zone, base64.b64encode(png).decode(), name)


def test_a_dropped_png_is_scored(page, encoder_model_dir):
    engine = Engine(encoder_model_dir, warmup=False)
    image = engine.generate([5])
    _, p_real = engine.score(image)
    _drop(page, "drop", encode_png(image[0]), "seed5.png")
    result = _wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#scores .p-real"))[0].text
    assert result.startswith(f"p_real {p_real[0]:.3f}") and result.endswith("seed5.png")


def test_a_dropped_image_is_projected_and_interpolated_from(page, encoder_model_dir):
    image = Engine(encoder_model_dir, warmup=False).generate([11])[0]
    _drop(page, "project-drop", encode_png(image), "seed11.png")
    text = _wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#projection .psnr"))[0].text
    shown = page.find_elements(By.CSS_SELECTOR, "#projection img")[1].get_attribute("src")
    reconstruction = np.asarray(Image.open(io.BytesIO(base64.b64decode(shown.removeprefix("data:image/png;base64,")))))
    error = np.mean((reconstruction.astype(np.float64) - image[..., 0]) ** 2) / 255.0 ** 2
    psnr = 10 * np.log10(1 / error)
    assert psnr >= 25  # G's own image comes back (the HTTP test's bound)
    assert f"{psnr:.1f} dB refined" in text and text.startswith("PSNR ")
    page.find_element(By.ID, "project-interpolate").click()
    _wait(page, lambda d: "from the projected image to seed 7" in _status(d))
    strip = page.find_element(By.CSS_SELECTOR, "#strip img")
    _wait(page, lambda d: d.execute_script("return arguments[0].naturalWidth", strip) > 0)
    assert page.execute_script("return arguments[0].naturalWidth", strip) == 8 * 8 + 9


def test_interpolation_shows_a_strip(page):
    page.find_element(By.ID, "interpolate").click()
    # the strip may still hold the projection test's picture: wait for this one (its alt names both seeds)
    strip = _wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, '#strip img[alt="seed 3 to seed 7"]'))[0]
    _wait(page, lambda d: d.execute_script("return arguments[0].naturalWidth", strip) > 0)
    assert page.execute_script("return arguments[0].naturalWidth", strip) == 8 * 8 + 9  # 8 frames, 1 px borders
