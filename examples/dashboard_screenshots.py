"""The README's pictures of the Explanations dashboard: the grid in light and dark mode and the detail view.

    python examples/dashboard_screenshots.py [--epochs 4] [--out docs]

Trains the reference CNN on the built-in shapes twice (two learning rates, two runs side by side)
with ExplanationLogger (saliency, CAM, Integrated Gradients, class models; masks and labels
given, so per-image quality is logged too), serves the logs with `tensorboard --host 127.0.0.1`
and takes the pictures with headless Chromium (Debian's chromium and chromium-driver; selenium
comes with `pip install -e ".[test]"`). Takes about 2 minutes on two CPU cores.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import keras_interp as ki  # noqa: E402

# In the dashboard's frame: resolve once the rows in view are drawn (every cell loaded or n/a).
DRAWN = """
const done = arguments[0];
(function check() {
  const grid = document.getElementById('grid');
  const cells = grid ? [...grid.querySelectorAll('tr.image-row td.cell')].filter(c => {
    const b = c.getBoundingClientRect();
    return b.bottom > 0 && b.top < window.innerHeight;
  }) : [];
  if (cells.length && cells.every(c => c.dataset.state === 'loaded' || c.dataset.state === 'missing')) done(cells.length);
  else requestAnimationFrame(check);
})();
"""


def train(logdir, epochs):
    watched = ki.datasets.shapes(8, seed=777)
    for name, rate in (("lr_1e-3", 1e-3), ("lr_3e-4", 3e-4)):
        keras.utils.set_random_seed(0)
        model = ki.reference_cnn((64, 64, 3), num_classes=len(watched.class_names))
        model.compile(keras.optimizers.Adam(rate), "sparse_categorical_crossentropy", metrics=["accuracy"])
        folder = os.path.join(logdir, name)
        logger = ki.ExplanationLogger(watched.images, folder, methods=("saliency", "cam", "integrated_gradients",
                                                                       "class_model"),
                                      labels=watched.labels, masks=watched.masks, class_names=watched.class_names,
                                      freq=1)
        ki.models.train_on_shapes(model, epochs=epochs, callbacks=[logger], verbose=0)
        print(f"trained {name}")


def serve(logdir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--host", "127.0.0.1", "--port", str(port),
         "--samples_per_plugin=images=1000,keras_interp=1000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"{url}/data/plugin/keras_interp/runs", timeout=2) as response:
                if response.read().count(b'"version"') == 2:
                    return process, url
        except OSError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise RuntimeError("tensorboard did not serve the two runs")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", default="docs")
    args = parser.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    logdir = tempfile.mkdtemp()
    train(logdir, args.epochs)
    process, url = serve(logdir)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1400"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_script_timeout(120)
    os.makedirs(args.out, exist_ok=True)
    try:
        for theme in ("light", "dark"):
            driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                                   {"features": [{"name": "prefers-color-scheme", "value": theme}]})
            driver.get(f"{url}/?darkMode={str(theme == 'dark').lower()}#keras_interp")
            for _ in range(120):
                frames = driver.find_elements("css selector", "iframe")
                if frames:
                    break
                time.sleep(0.25)
            driver.switch_to.frame(frames[0])
            for _ in range(120):  # the runs pane: check every run, so both show side by side
                boxes = driver.find_elements("css selector", "#runs input[data-run]")
                if boxes:
                    break
                time.sleep(0.25)
            for box in boxes:
                if not box.is_selected():
                    box.click()
            driver.execute_async_script(DRAWN)
            time.sleep(0.5)
            driver.switch_to.default_content()
            path = os.path.join(args.out, f"dashboard_{theme}.png")
            driver.save_screenshot(path)
            print(f"wrote {path}")
        driver.switch_to.frame(driver.find_elements("css selector", "iframe")[0])
        driver.find_elements("css selector", "tr.image-row td.cell")[1].click()
        for _ in range(120):
            if driver.execute_script("const d = document.getElementById('detail'); return d && "
                                     "[...d.querySelectorAll('.frame')].every(f => f.dataset.state === 'loaded' "
                                     "|| f.dataset.state === 'missing')"):
                break
            time.sleep(0.25)
        time.sleep(0.5)
        driver.switch_to.default_content()
        path = os.path.join(args.out, "dashboard_detail.png")
        driver.save_screenshot(path)
        print(f"wrote {path}")
    finally:
        driver.quit()
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
