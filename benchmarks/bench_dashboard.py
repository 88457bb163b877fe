"""How responsive the Explanations dashboard is on a large run: 64 images x 5 methods x 100 epochs.

    python benchmarks/bench_dashboard.py [--epochs 100] [--images 64] [--load_fast true]

Writes synthetic explanation summaries with keras_interp.summary (64x64 inputs, smooth 64x64
maps, predictions and scalars), starts `tensorboard --host 127.0.0.1` on them and measures:

- page open to every overlay of the rows in view drawn, in headless Chromium (Debian's chromium
  and chromium-driver, selenium from the test extra); rows below the fold load when scrolled in;
- slider move to every overlay in view redrawn at the new epoch, mean and max over several moves;
- opacity change to every overlay in view recoloured (no request: from pixels kept in the page);
- /image latency: sequential requests for random (method, image, epoch) maps, straight to the
  server (the route reads that one tag, so it must not grow with images x methods x epochs).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_interp import summary  # noqa: E402

METHODS = ("saliency", "smoothgrad", "integrated_gradients", "occlusion", "gradcam")


def write_logs(folder, epochs, images, size=64):
    rng = np.random.default_rng(0)
    pictures = rng.uniform(size=(images, size, size, 3)).astype("float32")
    writer = tf.summary.create_file_writer(os.path.join(folder, "big", summary.SUBDIR))
    with writer.as_default():
        for i in range(images):
            summary.write_input(i, pictures[i], 0, label=i % 4, class_names=["circle", "square", "triangle", "cross"])
        for epoch in range(epochs):
            for i in range(images):
                summary.write_prediction(i, i % 4, 0.5, i % 4, 0.5, epoch)
                for method in METHODS:
                    # Smooth maps, as explanations are (a noise map would not compress like one).
                    coarse = rng.normal(size=(8, 8)).astype("float32")
                    summary.write_map(method, i, cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC), epoch)
            tf.summary.scalar(f"{summary.SCALAR_PREFIX}confidence", epoch / epochs, step=epoch)
    writer.close()


# In the dashboard's frame: optionally move the epoch slider, then resolve (milliseconds since the
# move, or since the frame's start) once the grid shows that step and every cell of the rows in
# view is drawn (or n/a).
WATCH = """
const [index, move, done] = arguments;
const t0 = move ? performance.now() : 0;
if (move) {
  const s = document.getElementById('epoch');
  s.value = index;
  s.dispatchEvent(new Event('input'));
}
function ready() {
  const grid = document.getElementById('grid');
  if (!grid || grid.dataset.step !== String(index)) return false;
  const rows = [...grid.querySelectorAll('tr.image-row')].filter(r => {
    const b = r.getBoundingClientRect();
    return b.bottom > 0 && b.top < window.innerHeight;
  });
  const cells = rows.flatMap(r => [...r.querySelectorAll('td.cell')]);
  return cells.length > 0 && cells.every(c => c.dataset.state === 'loaded' || c.dataset.state === 'missing');
}
(function check() { if (ready()) done(performance.now() - t0); else requestAnimationFrame(check); })();
"""


def get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--load_fast", default="true")
    parser.add_argument("--image_requests", type=int, default=100)
    args = parser.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from test_tb_browser import _frame_state, free_port, wait_for  # the browser helpers live with the tests

    folder = tempfile.mkdtemp()
    start = time.perf_counter()
    write_logs(folder, args.epochs, args.images)
    print(f"wrote {args.images} images x {len(METHODS)} methods x {args.epochs} epochs "
          f"({args.images * len(METHODS) * args.epochs} maps) in {time.perf_counter() - start:.1f} s")
    port = free_port()
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", folder, "--host", "127.0.0.1", "--port", str(port),
         f"--load_fast={args.load_fast}", "--samples_per_plugin=images=1000,keras_interp=1000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    plugin = f"{url}/data/plugin/keras_interp"
    driver = None
    try:
        def ready():
            runs = json.loads(get(f"{plugin}/runs", timeout=5))["runs"]
            return runs and len(next(iter(runs.values()))["steps"]) == args.epochs and runs
        runs = wait_for(ready, timeout=600, interval=0.5, what="tensorboard to load the run")
        print(f"tensorboard (load_fast={args.load_fast}) serving all {args.epochs} epochs after "
              f"{time.perf_counter() - start:.1f} s")
        run = next(iter(runs))

        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--window-size=1400,2400"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        driver.set_script_timeout(120)

        def drawn(step):
            s = _frame_state(driver)
            return s["step"] == str(step) and s["visible"] > 0 and s["visibleDone"] == s["visible"] and s

        last = args.epochs - 1
        start = time.perf_counter()
        driver.get(f"{url}/?darkMode=false#keras_interp")
        driver.switch_to.frame(wait_for(lambda: driver.find_elements("css selector", "iframe"), interval=0.05)[0])
        wait_for(lambda: driver.execute_script("return !!document.getElementById('grid')"), timeout=120, interval=0.05,
                 what="the dashboard's module to run")
        # Watched from inside the page, once per animation frame (polling through selenium would
        # compete for the same 2 cores).
        in_frame = driver.execute_async_script(WATCH, last, False) / 1000
        elapsed = time.perf_counter() - start
        state = drawn(last)
        print(f"page open to all {state['visible']} overlays in view drawn ({state['canvases']} cells in the grid): "
              f"{elapsed:.2f} s, of which {in_frame:.2f} s from the dashboard frame's start (the rest is "
              f"TensorBoard's own page)")
        latencies = []
        for epoch in (0, 50, 99, 25, 75, 10, 90, 60):
            epoch = min(epoch, last)
            latencies.append(driver.execute_async_script(WATCH, epoch, True) / 1000)
            assert drawn(epoch)
        print(f"slider move to all {state['visible']} overlays in view redrawn: mean {np.mean(latencies):.2f} s, "
              f"max {np.max(latencies):.2f} s ({len(latencies)} moves)")
        first = "return document.querySelector('canvas.overlay').toDataURL();"
        before = driver.execute_script(first)
        driver.execute_script("performance.clearResourceTimings(); performance.setResourceTimingBufferSize(100000);")
        start = time.perf_counter()
        driver.execute_script("const o = document.getElementById('opacity'); o.value = 0.8; o.dispatchEvent(new Event('input'));")
        # All loaded cells are repainted in one animation frame: the first one changing means all did.
        wait_for(lambda: driver.execute_script(first) != before, timeout=30, interval=0.02, what="the recolouring")
        elapsed = time.perf_counter() - start
        time.sleep(0.5)
        requests = driver.execute_script("return performance.getEntriesByType('resource').length")
        print(f"opacity change to all loaded overlays recoloured: {elapsed:.2f} s, {requests} requests")
        # /image straight to the server, on images below the fold (never requested by the page):
        # first a tag's first request (the tag is read), then other steps of the same tags (its
        # blob keys are kept).
        rng = np.random.default_rng(1)
        tags = [summary.map_tag(m, i) for m in METHODS for i in range(args.images // 2, args.images)]
        tags = [tags[k] for k in rng.permutation(len(tags))[: args.image_requests]]
        for label, steps in (("first request of a tag", rng.integers(args.epochs, size=len(tags))),
                             ("tag read before", rng.integers(args.epochs, size=len(tags)))):
            latencies = []
            for tag, step in zip(tags, steps):
                query = urllib.parse.urlencode({"run": run, "tag": tag, "step": int(step)})
                start = time.perf_counter()
                body = get(f"{plugin}/image?{query}")
                latencies.append(time.perf_counter() - start)
                assert body[:8] == b"\x89PNG\r\n\x1a\n"
            ms = 1000 * np.array(latencies)
            print(f"/image latency, {label} ({len(ms)} random maps): mean {ms.mean():.1f} ms, "
                  f"median {np.median(ms):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms, max {ms.max():.1f} ms")
        for route, params in (("runs", {}), ("predictions", {"run": run, "step": args.epochs // 2})):
            start = time.perf_counter()
            get(f"{plugin}/{route}?{urllib.parse.urlencode(params)}")
            print(f"/{route}: {1000 * (time.perf_counter() - start):.1f} ms")
    finally:
        if driver is not None:
            driver.quit()
        process.terminate()
        process.wait(timeout=20)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
