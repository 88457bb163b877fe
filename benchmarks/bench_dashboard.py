"""How responsive the Explanations dashboard is on a large run: 100 epochs x 8 images x 5 methods.

    python benchmarks/bench_dashboard.py [--epochs 100] [--images 8] [--load_fast true]

Writes synthetic explanation summaries with keras_interp.summary (64x64 images and maps), starts
`tensorboard --host 127.0.0.1` on them, and drives headless Chromium (Debian's chromium and
chromium-driver, selenium from the test extra): time until the whole grid is drawn, and the
latency of a slider move (new epoch drawn) averaged over several moves.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_interp import summary  # noqa: E402

METHODS = ("saliency", "smoothgrad", "integrated_gradients", "occlusion", "gradcam")


def write_logs(folder, epochs, images):
    rng = np.random.default_rng(0)
    pictures = rng.uniform(size=(images, 64, 64, 3)).astype("float32")
    writer = tf.summary.create_file_writer(os.path.join(folder, "big", summary.SUBDIR))
    with writer.as_default():
        for i in range(images):
            summary.write_input(i, pictures[i], 0)
        for epoch in range(epochs):
            for i in range(images):
                summary.write_prediction(i, i % 4, 0.5, i % 4, epoch)
                for method in METHODS:
                    summary.write_map(method, i, rng.uniform(size=(64, 64)), epoch)
            tf.summary.scalar(f"{summary.SCALAR_PREFIX}confidence", epoch / epochs, step=epoch)
    writer.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--load_fast", default="true")
    args = parser.parse_args()
    import json
    import subprocess
    import urllib.request

    from selenium import webdriver
    from test_tb_browser import _frame_state, free_port, wait_for  # the browser helpers live with the tests

    from selenium.webdriver.chrome.service import Service

    folder = tempfile.mkdtemp()
    start = time.perf_counter()
    write_logs(folder, args.epochs, args.images)
    print(f"wrote {args.epochs} epochs x {args.images} images x {len(METHODS)} methods in "
          f"{time.perf_counter() - start:.1f} s")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", folder, "--host", "127.0.0.1", "--port", str(port),
         f"--load_fast={args.load_fast}", "--samples_per_plugin=images=1000,keras_interp=1000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--window-size=1400,2400"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        def ready():
            with urllib.request.urlopen(f"{url}/data/plugin/keras_interp/runs", timeout=2) as response:
                runs = json.load(response)["runs"]
                return runs and len(next(iter(runs.values()))["steps"]) == args.epochs
        wait_for(ready, timeout=300, what="tensorboard to load the run")
        cells = args.images * len(METHODS)
        start = time.perf_counter()
        driver.get(f"{url}/?darkMode=false#keras_interp")
        driver.switch_to.frame(wait_for(lambda: driver.find_elements("css selector", "iframe"))[0])
        wait_for(lambda: _frame_state(driver)["loaded"] == cells, timeout=120, interval=0.05, what="the grid")
        print(f"page open to all {cells} overlays drawn: {time.perf_counter() - start:.2f} s")
        latencies = []
        for epoch in (0, 50, 99, 25, 75):
            epoch = min(epoch, args.epochs - 1)
            start = time.perf_counter()
            driver.execute_script(
                f"const s = document.getElementById('epoch'); s.value = {epoch}; s.dispatchEvent(new Event('input'));"
            )
            wait_for(lambda: (s := _frame_state(driver))["step"] == str(epoch) and s["loaded"] == cells,
                     timeout=60, interval=0.02, what=f"epoch {epoch}")
            latencies.append(time.perf_counter() - start)
        print(f"slider move to all overlays redrawn: mean {np.mean(latencies):.2f} s, max {np.max(latencies):.2f} s")
    finally:
        driver.quit()
        process.terminate()
        process.wait(timeout=20)


if __name__ == "__main__":
    main()
