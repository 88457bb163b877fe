"""End to end: a real `tensorboard` process on logs written by ExplanationLogger, driven by
headless Chromium (Debian's chromium and chromium-driver, installed by .ci/run)."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from test_tb_plugin import HOSTILE, write_logs

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout=60, interval=0.25, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - not ready yet (connection refused, no frame, ...)
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("browser_logs"))
    write_logs(path, epochs=3)
    return path


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1400,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


class _URL(str):
    def __new__(cls, url, load_fast):
        value = super().__new__(cls, url)
        value.load_fast = load_fast
        return value


@pytest.fixture
def tensorboard_server(logdir, request):
    load_fast, prefix = request.param
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--host", "127.0.0.1", "--port", str(port),
         f"--load_fast={load_fast}", "--samples_per_plugin=images=1000,keras_interp=1000", f"--path_prefix={prefix}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}{prefix}"
    try:
        def ready():
            with urllib.request.urlopen(f"{url}/data/plugin/keras_interp/runs", timeout=2) as response:
                return len(json.load(response)["runs"]) == 2
        wait_for(ready, timeout=90, what="tensorboard to serve the runs")
        yield _URL(url, load_fast)
    finally:
        process.terminate()
        process.wait(timeout=20)


def _frame_state(driver):
    return driver.execute_script(
        """
        const canvases = [...document.querySelectorAll('canvas.overlay')];
        const inputs = [...document.querySelectorAll('img.input')];
        const grid = document.getElementById('grid');
        return {
          step: grid ? grid.dataset.step : null,
          canvases: canvases.length,
          loaded: canvases.filter(c => c.dataset.loaded === '1' && c.width > 0).length,
          inputs: inputs.length,
          inputsLoaded: inputs.filter(i => i.complete && i.naturalWidth > 0).length,
          runs: [...document.querySelectorAll('#run option')].map(o => o.textContent),
        };
        """
    )


@pytest.mark.parametrize("tensorboard_server", [("true", ""), ("false", ""), ("true", "/under/prefix")], indirect=True)
def test_dashboard_loads_every_image_and_the_slider_changes_the_epoch(tensorboard_server, browser, tmp_path):
    browser.get(f"{tensorboard_server}/?darkMode=false#keras_interp")
    frame = wait_for(lambda: browser.find_elements("css selector", "iframe"), what="the plugin iframe")[0]
    browser.switch_to.frame(frame)
    try:
        state = wait_for(
            lambda: (s := _frame_state(browser)) and s["canvases"] == 4 and s["loaded"] == 4 and s["inputsLoaded"] == 2 and s,
            what="every image of the grid to load",
        )
        assert state["step"] == "2" and state["inputs"] == 2
        # Hostile run names are shown as text, never parsed as HTML.
        assert f"{HOSTILE}/explanations" in state["runs"]
        assert browser.execute_script("return document.querySelectorAll('img[src=\"x\"]').length") == 0
        browser.execute_script(
            "const s = document.getElementById('epoch'); s.value = 0; s.dispatchEvent(new Event('input'));"
        )
        wait_for(lambda: (s := _frame_state(browser))["step"] == "0" and s["loaded"] == 4, what="epoch 1 to show")
        browser.execute_script(
            "const s = document.getElementById('epoch'); s.value = 2; s.dispatchEvent(new Event('input'));"
        )
        wait_for(lambda: (s := _frame_state(browser))["step"] == "2" and s["loaded"] == 4, what="epoch 3 to show")
        # KERAS_INTERP_SCREENSHOTS=folder keeps the picture (the README's comes from here).
        folder = os.environ.get("KERAS_INTERP_SCREENSHOTS", str(tmp_path))
        os.makedirs(folder, exist_ok=True)
        name = f"load_fast_{tensorboard_server.load_fast}{'_prefix' if 'prefix' in tensorboard_server else ''}"
        path = os.path.join(folder, f"tensorboard_plugin_{name}.png")
        browser.switch_to.default_content()
        browser.save_screenshot(path)
        assert os.path.getsize(path) > 10_000
    finally:
        browser.switch_to.default_content()
