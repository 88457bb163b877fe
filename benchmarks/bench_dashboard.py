"""How responsive the Explanations dashboard is on large runs.

    python benchmarks/bench_dashboard.py [--config small|large|huge|all] [--epochs N] [--format indexed|old]
                                         [--load_fast true]

Writes the logger's plugin data directly as event records (smooth signed maps in the logger's
16-bit PNG format, predictions, a scalar, and the run's index and one-tensor predictions records;
`--format old` leaves those two out, as older loggers did) for each run, served by `tensorboard
--host 127.0.0.1` and opened in headless Chromium (Debian's chromium and chromium-driver, selenium
from the test extra) at 1400x2400:

- small: 8 images x 5 methods x 100 epochs, 64x64 (today's demo scale);
- large: 1,000 images x 6 methods x 100 epochs, 32x32 (600,000 maps, about 1.5 GiB of logs);
- huge: 10,000 images x 6 methods x 10 epochs, 32x32 (600,000 maps, about the same disk).

The page opens on a server that has loaded the run but never answered the plugin (it waits on
the Scalars plugin), so the first /runs, /predictions and /image answers are part of the time.
It prints, for each: TensorBoard's load time; page open to every overlay of the rows in view
drawn (and the image requests that took, and the rows in the DOM); slider move to the rows in
view redrawn at the new epoch (mean and max of 8 moves); opacity change to every overlay
recoloured (no request); for the large run, scrolling a screen at a time to the bottom (each
screen drawn, rows in the DOM at most); the page's JavaScript heap and DOM nodes (Chromium's
Performance.getMetrics, TensorBoard's own page included); /image latency straight to the server;
and at the end a summary of the page-open and slider-move times against the targets (<= 2 s,
<= 0.3 s).
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

METHODS = ("saliency", "smoothgrad", "integrated_gradients", "occlusion", "gradcam", "cam")
CLASS_NAMES = ["circle", "square", "triangle", "cross"]
DISTINCT_MAPS = 64  # maps are drawn from a pool this big: encoding 600,000 maps would dominate the run


def write_logs(folder, epochs, images, methods=METHODS, size=32, run="big", indexed=True):
    """The plugin data of the logger for images x methods x epochs, written as event records
    directly (tf.summary.write takes ~0.5 ms a call: 5 minutes for 600,000 maps). With
    indexed=False, without the index and one-tensor predictions records (logs of older loggers)."""
    import socket

    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.util import tensor_util

    rng = np.random.default_rng(0)
    blob_class, tensor_class = summary_pb2.DATA_CLASS_BLOB_SEQUENCE, summary_pb2.DATA_CLASS_TENSOR
    pictures = [tensor_util.make_tensor_proto([summary.encode_png((rng.uniform(size=(size, size, 3)) * 255).astype(np.uint8))])
                for _ in range(16)]
    # Smooth signed maps, as explanations are (a noise map would not compress like one).
    pool = [tensor_util.make_tensor_proto([summary.encode_map(
        cv2.resize(rng.normal(size=(6, 6)), (size, size), interpolation=cv2.INTER_CUBIC))]) for _ in range(DISTINCT_MAPS)]
    path = os.path.join(folder, run, summary.SUBDIR)
    os.makedirs(path, exist_ok=True)
    # TensorFlow's record writer: TensorBoard's own computes its checksums in Python, 100x slower.
    records = tf.io.TFRecordWriter(os.path.join(path, f"events.out.tfevents.{time.time():.0f}.{socket.gethostname()}.bench"))
    records.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
    first = set()

    def write(tag, step, proto, kind, data_class, **content):
        value = summary_pb2.Summary.Value(tag=tag, tensor=proto)
        if tag not in first:  # TensorBoard keeps the first event's metadata of a tag
            first.add(tag)
            value.metadata.CopyFrom(summary._metadata(kind, data_class, **content))
        event = event_pb2.Event(step=step, wall_time=time.time(), summary=summary_pb2.Summary(value=[value]))
        records.write(event.SerializeToString())

    for i in range(images):
        write(summary.input_tag(i), 0, pictures[i % len(pictures)], "input", blob_class, index=i, label=i % 4,
              class_names=CLASS_NAMES)
    choices = rng.integers(DISTINCT_MAPS, size=(epochs, images, len(methods)))
    for epoch in range(epochs):
        rows = []
        for i in range(images):
            p = 0.25 + 0.75 * rng.uniform()
            predicted = i % 4 if rng.uniform() < 0.8 else (i + 1) % 4
            rows.append([i, predicted, p, i % 4, p])
            write(summary.prediction_tag(i), epoch, tensor_util.make_tensor_proto(np.array([predicted, p, i % 4, p], np.float32)),
                  "prediction", tensor_class, index=i, fields=list(summary.PREDICTION_FIELDS))
            for m, method in enumerate(methods):
                write(summary.map_tag(method, i), epoch, pool[choices[epoch, i, m]], "map", blob_class, method=method,
                      index=i, label=method, encoding=summary.MAP_ENCODING)
        if indexed:  # as the logger writes them at the end of each epoch
            write(summary.PREDICTIONS_TAG, epoch, tensor_util.make_tensor_proto(np.array(rows, np.float32)), "predictions", tensor_class,
                  fields=["index", *summary.PREDICTION_FIELDS])
            content = summary.index_content({i: i % 4 for i in range(images)}, CLASS_NAMES,
                                            {m: {"label": m, "signed": None, "clip": None} for m in methods}, {}, {})
            write(summary.INDEX_TAG, epoch, tensor_util.make_tensor_proto(json.dumps(content, separators=(",", ":"))),
                  "index", tensor_class)
        scalar = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=f"{summary.SCALAR_PREFIX}confidence",
                                                                      simple_value=epoch / epochs)])
        records.write(event_pb2.Event(step=epoch, wall_time=time.time(), summary=scalar).SerializeToString())
    records.close()


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


# In the frame: scroll the page by one screen (or to the bottom), then resolve (ms) once the rows
# in view are drawn.
SCROLL = """
const [toBottom, done] = arguments;
const t0 = performance.now();
const scroller = document.scrollingElement;
scroller.scrollTop = toBottom ? scroller.scrollHeight : scroller.scrollTop + window.innerHeight;
function ready() {
  const rows = [...document.querySelectorAll('tr.image-row')].filter(r => {
    const b = r.getBoundingClientRect();
    return b.bottom > 0 && b.top < window.innerHeight;
  });
  const cells = rows.flatMap(r => [...r.querySelectorAll('td.cell')]);
  return cells.length > 0 && cells.every(c => c.dataset.state === 'loaded' || c.dataset.state === 'missing');
}
(function check() { if (ready()) done(performance.now() - t0); else requestAnimationFrame(check); })();
"""

IMAGE_REQUESTS = "return performance.getEntriesByType('resource').filter(e => e.name.includes('/image?')).length"


def measure(driver, url, epochs, scrolls, label):
    """First paint, slider moves, recolouring, scrolling and memory of the dashboard on one run:
    returns (page open s, [slider move s])."""
    from test_tb_browser import _frame_state, wait_for  # the browser helpers live with the tests

    def drawn(step):
        s = _frame_state(driver)
        return s["step"] == str(step) and s["visible"] > 0 and s["visibleDone"] == s["visible"] and s

    last = epochs - 1
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
    requests = driver.execute_script(IMAGE_REQUESTS)
    rows_in_dom = driver.execute_script("return document.querySelectorAll('tr.image-row').length")
    opened = elapsed
    print(f"[{label}] page open to all {state['visible']} overlays in view drawn: {elapsed:.2f} s, of which "
          f"{in_frame:.2f} s from the dashboard frame's start (the rest is TensorBoard's own page); "
          f"{requests} image requests, {rows_in_dom} rows in the DOM")
    latencies = []
    for fraction in (0, 0.5, 1, 0.25, 0.75, 0.1, 0.9, 0.6):  # spread over the run's epochs, never twice in a row
        epoch = round(fraction * last)
        latencies.append(driver.execute_async_script(WATCH, epoch, True) / 1000)
        assert drawn(epoch)
    print(f"[{label}] slider move to all {state['visible']} overlays in view redrawn: mean {np.mean(latencies):.2f} s, "
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
    print(f"[{label}] opacity change to all loaded overlays recoloured: {elapsed:.2f} s, "
          f"{driver.execute_script(IMAGE_REQUESTS)} image requests")
    if scrolls:
        times, rows = [], []
        for _ in range(scrolls):
            times.append(driver.execute_async_script(SCROLL, False) / 1000)
            rows.append(driver.execute_script("return document.querySelectorAll('tr.image-row').length"))
        bottom = driver.execute_async_script(SCROLL, True) / 1000
        rows.append(driver.execute_script("return document.querySelectorAll('tr.image-row').length"))
        last = driver.execute_script("const r = [...document.querySelectorAll('tr.image-row')]; "
                                     "return Math.max(...r.map(x => Number(x.dataset.index)))")
        print(f"[{label}] scrolling {scrolls} screens: each drawn after mean {np.mean(times):.2f} s, max {np.max(times):.2f} s; "
              f"then to the bottom (image {last} in view): drawn after {bottom:.2f} s; rows in the DOM at most {max(rows)}")
    metrics = {m["name"]: m["value"] for m in driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]}
    print(f"[{label}] memory: JS heap {metrics.get('JSHeapUsedSize', 0) / 2**20:.0f} MiB used of "
          f"{metrics.get('JSHeapTotalSize', 0) / 2**20:.0f} MiB (TensorBoard's page and the dashboard), "
          f"{metrics.get('Nodes', 0):.0f} DOM nodes")
    driver.switch_to.default_content()
    return opened, latencies


def serve(folder, load_fast, epochs):
    from test_tb_browser import free_port, wait_for

    port = free_port()
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", folder, "--host", "127.0.0.1", "--port", str(port),
         f"--load_fast={load_fast}", "--samples_per_plugin=images=1000,keras_interp=1000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    # Loaded once the confidence scalar, written after each epoch's maps, has every epoch; asked of
    # the Scalars plugin so that this plugin answers for the first time in the page.
    def ready():
        query = urllib.parse.urlencode({"run": f"big/{summary.SUBDIR}", "tag": f"{summary.SCALAR_PREFIX}confidence"})
        try:
            return len(json.loads(get(f"{url}/data/plugin/scalars/scalars?{query}", timeout=30))) == epochs
        except OSError:  # not serving yet, or the run not loaded yet (400)
            return False

    try:
        wait_for(ready, timeout=1800, interval=1, what="tensorboard to load the run")
    except BaseException:
        process.terminate()
        raise
    print(f"tensorboard (load_fast={load_fast}) serving all {epochs} epochs after {time.perf_counter() - start:.1f} s")
    return process, url, f"big/{summary.SUBDIR}"


def image_latency(plugin, run, methods, images, epochs, count):
    # /image straight to the server, on images below the fold (never requested by the page):
    # first a tag's first request (the tag is read), then other steps of the same tags (its
    # blob keys are kept).
    rng = np.random.default_rng(1)
    tags = [summary.map_tag(m, i) for m in methods for i in range(images // 2, images)]
    tags = [tags[k] for k in rng.permutation(len(tags))[:count]]
    for label, steps in (("first request of a tag", rng.integers(epochs, size=len(tags))),
                         ("tag read before", rng.integers(epochs, size=len(tags)))):
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
    for route, params in (("runs", {}), ("predictions", {"run": run, "step": epochs // 2})):
        start = time.perf_counter()
        get(f"{plugin}/{route}?{urllib.parse.urlencode(params)}")
        print(f"/{route}: {1000 * (time.perf_counter() - start):.1f} ms")


CONFIGS = {  # name: (images, methods, epochs, image size, screens scrolled)
    "small": (8, METHODS[:5], 100, 64, 0),
    "large": (1000, METHODS, 100, 32, 12),
    "huge": (10000, METHODS, 10, 32, 12),
}
TARGETS = (2.0, 0.3)  # page open, slider move (s)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", choices=[*CONFIGS, "all"], default="all")
    parser.add_argument("--epochs", type=int, default=None, help="instead of the config's")
    parser.add_argument("--format", choices=["indexed", "old"], default="indexed",
                        help="old: without the index and one-tensor predictions records, as older loggers wrote")
    parser.add_argument("--load_fast", default="true")
    parser.add_argument("--image_requests", type=int, default=100)
    args = parser.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    results = []
    for name in CONFIGS if args.config == "all" else [args.config]:
        images, methods, epochs, size, scrolls = CONFIGS[name]
        epochs = args.epochs or epochs
        label = f"{images} images x {len(methods)} methods x {epochs} epochs, {size}x{size}"
        folder = tempfile.mkdtemp()
        process = driver = None
        try:
            start = time.perf_counter()
            write_logs(folder, epochs, images, methods, size, indexed=args.format == "indexed")
            megabytes = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(folder) for f in fs) / 2**20
            print(f"\n{label} ({args.format} logs): wrote {images * len(methods) * epochs} maps ({megabytes:.0f} MiB) in "
                  f"{time.perf_counter() - start:.1f} s")
            process, url, run = serve(folder, args.load_fast, epochs)
            options = webdriver.ChromeOptions()
            options.binary_location = "/usr/bin/chromium"
            for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-background-networking", "--window-size=1400,2400"):
                options.add_argument(flag)
            driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
            driver.set_script_timeout(300)
            driver.execute_cdp_cmd("Performance.enable", {})
            opened, moves = measure(driver, url, epochs, scrolls, f"{images}x{len(methods)}x{epochs}")
            results.append((label, opened, moves))
            image_latency(f"{url}/data/plugin/keras_interp", run, methods, images, epochs, args.image_requests)
        finally:
            if driver is not None:
                driver.quit()
            if process is not None:
                process.terminate()
                process.wait(timeout=60)
            shutil.rmtree(folder, ignore_errors=True)
    print(f"\nSummary ({args.format} logs; targets: page open <= {TARGETS[0]:g} s, slider move <= {TARGETS[1]:g} s):")
    for label, opened, moves in results:
        ok = opened <= TARGETS[0] and np.mean(moves) <= TARGETS[1]
        print(f"  {label}: page open {opened:.2f} s; slider move mean {np.mean(moves):.2f} s, max {np.max(moves):.2f} s"
              f"{'' if ok else '  (above target)'}")


if __name__ == "__main__":
    main()
