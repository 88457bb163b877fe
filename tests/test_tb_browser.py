"""End to end: a real `tensorboard` process on logs written with keras_interp.summary (as the
logger writes them), driven by headless Chromium (Debian's chromium and chromium-driver,
installed by .ci/run)."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from test_tb_plugin import CLASS_NAMES, HOSTILE, write_logs

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
    # "dropped" stops logging gradcam after its first epoch (a method dropped mid-training), and
    # logs its class models at epochs 1 and 3 only.
    write_logs(path, runs=("good", HOSTILE, "dropped"), epochs=3, dropped={"dropped": 0},
               pictures={"good": range(3), HOSTILE: range(3), "dropped": (0, 2)})
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


def _serve(logdir, load_fast, prefix, runs):
    """A tensorboard process on `logdir` (yields its URL once it serves `runs` runs), stopped after."""
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
                return len(json.load(response)["runs"]) == runs
        wait_for(ready, timeout=90, what="tensorboard to serve the runs")
        yield _URL(url, load_fast)
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture
def tensorboard_server(logdir, request):
    load_fast, prefix = request.param
    yield from _serve(logdir, load_fast, prefix, runs=3)


@pytest.fixture(scope="module")
def real_runs_server(tmp_path_factory):
    """Runs the real logger wrote, served by one tensorboard: "signals", a Conv1D model (signals
    drawn as curves, maps as one row each), and "inside", a CNN with class models, channel images
    and top patches."""
    import keras
    import numpy as np

    import keras_interp as ki
    from conftest import tiny_cnn

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 2))
    h = keras.layers.Conv1D(4, 3, padding="same", activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(h)))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).normal(size=(8, 32, 2)).astype("float32")
    x[:, 20:26, 0] += 3.0  # a pulse, so the saliency map has a clear peak
    path = str(tmp_path_factory.mktemp("real_logs"))
    logger = ki.ExplanationLogger(x[:2], os.path.join(path, "signals"), methods=("saliency", "gradcam"))
    model.fit(x, np.zeros(8, int), epochs=1, verbose=0, callbacks=[logger])

    cnn = tiny_cnn((16, 16, 3))
    cnn.compile("adam", "sparse_categorical_crossentropy")
    images = np.random.default_rng(0).uniform(size=(8, 16, 16, 3)).astype("float32")
    logger = ki.ExplanationLogger(images[:2], os.path.join(path, "inside"), freq=1,
                                  methods=("saliency", "class_model", "features", "top_patches"))
    cnn.fit(images, np.arange(8) % 3, epochs=2, verbose=0, callbacks=[logger])
    yield from _serve(path, "true", "", runs=2)


def _strips(driver):
    """Each picture strip: its kind, epoch, state, title, captions and images (with their top-left pixel)."""
    return driver.execute_script(
        """
        const canvas = document.createElement('canvas');
        canvas.width = canvas.height = 1;
        const ctx = canvas.getContext('2d', { willReadFrequently: true });
        const pixel = (img) => {
          if (!(img.complete && img.naturalWidth > 0)) return null;
          ctx.clearRect(0, 0, 1, 1);
          ctx.drawImage(img, 0, 0, img.naturalWidth, img.naturalHeight, 0, 0, 1, 1);
          return [...ctx.getImageData(0, 0, 1, 1).data.slice(0, 3)];
        };
        const shown = (node) => node.offsetParent !== null;
        return [...document.querySelectorAll('div.strip')].map(s => ({
          kind: s.dataset.kind, which: s.dataset.which, step: s.dataset.step, state: s.dataset.state,
          title: s.querySelector('.strip-title').textContent,
          note: shown(s.querySelector('.strip-missing')) ? s.querySelector('.strip-missing').textContent : null,
          captions: [...s.querySelectorAll('.picture-caption')].filter(shown).map(c => c.textContent),
          images: [...s.querySelectorAll('img.picture')].filter(shown).map(i => ({
            index: i.dataset.index, step: i.dataset.step, loaded: i.dataset.loaded === '1' && i.complete,
            width: i.naturalWidth, pixel: pixel(i),
          })),
        }));
        """
    )


def _strip_shows(strip, kind, which, step, pictures=len(CLASS_NAMES)):
    """Whether `strip` shows every class model of `step` (an index), loaded, captioned with the class names.

    The pictures are 10 x 10, one colour: red 60 * class + 10, green 40 * epoch index + 5 (test_tb_plugin).
    """
    images = strip["images"]
    return (strip["kind"] == kind and strip["which"] == which and strip["step"] == str(step)
            and strip["state"] == "shown" and strip["captions"] == CLASS_NAMES[:pictures]
            and [i["index"] for i in images] == [str(k) for k in range(pictures)]
            and all(i["loaded"] and i["step"] == str(step) and i["width"] == 10 for i in images)
            and [i["pixel"] for i in images] == [[60 * k + 10, 40 * step + 5, 100] for k in range(pictures)])


def _frame_state(driver):
    return driver.execute_script(
        """
        const canvases = [...document.querySelectorAll('canvas.overlay')];
        const inputs = [...document.querySelectorAll('img.input')];
        const grid = document.getElementById('grid');
        const inView = (node) => {
          const r = node.getBoundingClientRect();
          return r.bottom > 0 && r.top < window.innerHeight;
        };
        const visibleCells = [...document.querySelectorAll('tr.image-row')].filter(inView)
          .flatMap(row => [...row.querySelectorAll('td.cell')]);
        return {
          step: grid ? grid.dataset.step : null,
          canvases: canvases.length,
          loaded: canvases.filter(c => c.dataset.loaded === '1' && c.width > 0).length,
          missing: [...document.querySelectorAll('td.cell')].filter(c => c.dataset.state === 'missing').length,
          canvasSteps: [...new Set(canvases.filter(c => c.dataset.loaded === '1').map(c => c.dataset.step))],
          visible: visibleCells.length,
          visibleDone: visibleCells.filter(c => c.dataset.state === 'missing'
            || (c.dataset.state === 'loaded' && c.querySelector('canvas').width > 0)).length,
          captions: [...document.querySelectorAll('div.caption')].map(c => [c.dataset.step, c.textContent]),
          headers: [...document.querySelectorAll('#grid tr.columns th')].map(h => h.textContent),
          inputs: inputs.length,
          inputsLoaded: inputs.filter(i => i.complete && i.naturalWidth > 0).length,
          runs: [...document.querySelectorAll('#runs .run-name')].map(o => o.textContent),
        };
        """
    )


@pytest.mark.parametrize("tensorboard_server", [("true", ""), ("false", ""), ("true", "/under/prefix")], indirect=True)
def test_dashboard_loads_every_image_and_the_slider_changes_the_epoch(tensorboard_server, browser, tmp_path):
    browser.get(f"{tensorboard_server}/?darkMode=false{pinned(tensorboard_server)}")
    frame = wait_for(lambda: browser.find_elements("css selector", "iframe"), what="the plugin iframe")[0]
    browser.switch_to.frame(frame)
    try:
        state = wait_for(
            lambda: (s := _frame_state(browser)) and s["canvases"] == 4 and s["loaded"] == 4 and s["inputsLoaded"] == 2 and s,
            what="every image of the grid to load",
        )
        assert state["step"] == "2" and state["inputs"] == 2
        strip, = wait_for(lambda: (s := _strips(browser)) and _strip_shows(s[0], "class_model", "a", 2) and s,
                          what="the class-model strip")
        assert strip["title"] == "class models: epoch 3" and strip["note"] is None
        # Hostile run names are shown as text, never parsed as HTML.
        assert f"{HOSTILE}/explanations" in state["runs"]
        assert browser.execute_script("return document.querySelectorAll('img[src=\"x\"]').length") == 0
        browser.execute_script(
            "const s = document.getElementById('epoch'); s.value = 0; s.dispatchEvent(new Event('input'));"
        )
        wait_for(lambda: (s := _frame_state(browser))["step"] == "0" and s["loaded"] == 4 and s["canvasSteps"] == ["0"],
                 what="epoch 1 to show")
        wait_for(lambda: (s := _strips(browser)) and len(s) == 1 and _strip_shows(s[0], "class_model", "a", 0),
                 what="the strip at epoch 1")
        browser.execute_script(
            "const s = document.getElementById('epoch'); s.value = 2; s.dispatchEvent(new Event('input'));"
        )
        wait_for(lambda: (s := _frame_state(browser))["step"] == "2" and s["loaded"] == 4 and s["canvasSteps"] == ["2"],
                 what="epoch 3 to show")
        # KERAS_INTERP_SCREENSHOTS=folder keeps the picture (the README's come from examples/dashboard_screenshots.py).
        folder = os.environ.get("KERAS_INTERP_SCREENSHOTS", str(tmp_path))
        os.makedirs(folder, exist_ok=True)
        name = f"load_fast_{tensorboard_server.load_fast}{'_prefix' if 'prefix' in tensorboard_server else ''}"
        path = os.path.join(folder, f"tensorboard_plugin_{name}.png")
        browser.switch_to.default_content()
        browser.save_screenshot(path)
        assert os.path.getsize(path) > 10_000
    finally:
        browser.switch_to.default_content()


def pinned(url, run=None):
    """The dashboard's tab with one run only (`run`, else the first), cells of 128 px: the view
    these tests read (the defaults, every run shown and fit to width, have their own test). The
    timeout is long: listing a run of a thousand images takes seconds on a busy machine."""
    if run is None:
        with urllib.request.urlopen(f"{url}/data/plugin/keras_interp/runs", timeout=120) as response:
            run = sorted(json.load(response)["runs"])[0]
    return "#keras_interp&ki=" + urllib.parse.quote(urllib.parse.urlencode({"run": run, "size": 128}))


def select_runs(driver, names):
    """Check exactly `names` in the runs pane (the wanted ones first: at least one run stays checked)."""
    driver.execute_script(
        """
        const names = arguments[0];
        const boxes = [...document.querySelectorAll('#runs input[data-run]')];
        const set = (box, on) => { if (box.checked !== on) { box.checked = on; box.dispatchEvent(new Event('change')); } };
        boxes.filter(b => names.includes(b.dataset.run)).forEach(b => set(b, true));
        boxes.filter(b => !names.includes(b.dataset.run)).forEach(b => set(b, false));
        """,
        list(names),
    )


def _slide(driver, value, slider="epoch"):
    driver.execute_script(
        f"const s = document.getElementById('{slider}'); s.value = {value}; s.dispatchEvent(new Event('input'));"
    )


def _image_requests(driver):
    """/image requests the page made: the browser's resource timing, and a fetch counter (installed below)."""
    return driver.execute_script(
        "return [performance.getEntriesByType('resource').filter(e => e.name.includes('/image?')).length,"
        " window.__imageFetches || 0];"
    )


# Wraps the frame's fetch: counts /image requests, and holds back any request for step 0 by 2 s
# (so a redraw for epoch 1 is still in flight when the slider has moved on).
_INSTRUMENT_FETCH = """
performance.setResourceTimingBufferSize(100000);
window.__imageFetches = 0;
const original = window.fetch;
window.fetch = async (input, init) => {
  const url = String(input && input.url ? input.url : input);
  if (url.includes('/image?')) window.__imageFetches += 1;
  if (new URL(url).searchParams.get('step') === '0') await new Promise(r => setTimeout(r, 2000));
  return original(input, init);
};
"""


def _pixels(driver):
    return driver.execute_script("return [...document.querySelectorAll('canvas.overlay')].map(c => c.toDataURL());")


@pytest.mark.parametrize("tensorboard_server", [("true", "")], indirect=True)
def test_dashboard_survives_nan_stale_redraws_recolours_locally_and_shows_dropped_methods(tensorboard_server, browser):
    browser.get(f"{tensorboard_server}/?darkMode=false{pinned(tensorboard_server)}")
    frame = wait_for(lambda: browser.find_elements("css selector", "iframe"), what="the plugin iframe")[0]
    browser.switch_to.frame(frame)
    try:
        wait_for(lambda: (s := _frame_state(browser))["loaded"] == 4 and s["inputsLoaded"] == 2, what="the grid")
        wait_for(lambda: (s := _strips(browser)) and _strip_shows(s[0], "class_model", "a", 2), what="the strip")
        browser.execute_script(_INSTRUMENT_FETCH)

        # NaN probabilities show as n/a; the explained class and its probability follow the prediction's.
        state = wait_for(lambda: (s := _frame_state(browser))["captions"][1][1] and s, what="the captions")
        assert state["captions"] == [
            ["2", f"predicted b (70.0%), explaining {HOSTILE} (27.0%)"],
            ["2", "predicted a (n/a)"],
        ]
        assert state["headers"] == ["input", "Grad-CAM (cam fallback: no GAP head) @3", "saliency @3"]
        charts = browser.execute_script("return document.getElementById('charts').textContent")
        assert "saliency/energy: n/a" in charts and "confidence: 0.500" in charts  # inf -> null -> n/a
        assert browser.execute_script("return document.querySelectorAll('img[src=\"x\"]').length") == 0

        # Opacity and colormap recolour what is loaded, without a single new /image request.
        before, pixels = _image_requests(browser), _pixels(browser)
        assert before[0] >= 9  # 2 inputs + 4 maps + 3 class models, seen by resource timing
        browser.execute_script(
            "const o = document.getElementById('opacity'); o.value = 0.9; o.dispatchEvent(new Event('input'));"
            "const c = document.getElementById('colormap'); c.value = 'grey'; c.dispatchEvent(new Event('change'));"
        )
        wait_for(lambda: all(a != b for a, b in zip(_pixels(browser), pixels)), what="the overlays to be recoloured")
        time.sleep(0.5)
        assert _image_requests(browser) == before
        assert _frame_state(browser)["loaded"] == 4

        # Quick slider moves: epoch 1's answers are held back 2 s, then epoch 2 is chosen; the grid
        # and the strip must end on epoch 2 and stay there when the stale answers arrive.
        _slide(browser, 0)
        time.sleep(0.3)
        _slide(browser, 1)
        expected = [["1", f"predicted b (60.0%), explaining {HOSTILE} (26.0%)"], ["1", "predicted a (n/a)"]]

        def settled():
            s = _frame_state(browser)
            strips = _strips(browser)
            return (s["step"] == "1" and s["loaded"] == 4 and s["canvasSteps"] == ["1"] and s["captions"] == expected
                    and len(strips) == 1 and _strip_shows(strips[0], "class_model", "a", 1) and s)

        wait_for(settled, what="epoch 2 to show")
        time.sleep(2.5)  # the held-back epoch-1 requests have come back (or were aborted) by now
        assert settled(), _frame_state(browser)
        assert _frame_state(browser)["headers"][1:] == ["Grad-CAM (cam fallback: no GAP head) @2", "saliency @2"]

        # Compare mode: a second column per method at the second slider's epoch.
        browser.execute_script(
            "const c = document.getElementById('compare'); c.checked = true; c.dispatchEvent(new Event('change'));"
        )
        _slide(browser, 2, slider="epoch-b")
        state = wait_for(lambda: (s := _frame_state(browser))["loaded"] == 8 and s["headers"][-1] == "saliency @3" and s,
                         what="the compared epochs")
        assert state["headers"][1:] == ["Grad-CAM (cam fallback: no GAP head) @2", "Grad-CAM (cam fallback: no GAP head) @3",
                                        "saliency @2", "saliency @3"]
        assert sorted(state["canvasSteps"]) == ["1", "2"] and state["step"] == "1"
        # ... and a second strip at the compare epoch, under the first.
        strips = wait_for(lambda: (s := _strips(browser)) and len(s) == 2 and _strip_shows(s[0], "class_model", "a", 1)
                          and _strip_shows(s[1], "class_model", "b", 2) and s, what="the compared strips")
        assert [s["title"] for s in strips] == ["class models: epoch 2", "class models: epoch 3 (compare)"]
        browser.execute_script(
            "const c = document.getElementById('compare'); c.checked = false; c.dispatchEvent(new Event('change'));"
        )
        wait_for(lambda: (s := _frame_state(browser))["canvases"] == 4 and s["loaded"] == 4, what="compare off")
        assert [s["which"] for s in _strips(browser)] == ["a"]

        # A method dropped after epoch 1: the slider still reaches epoch 3 and its cells say n/a.
        select_runs(browser, ["dropped/explanations"])  # the epoch stays where it was (epoch 2) ...
        _slide(browser, 2)  # ... and moves to epoch 3
        state = wait_for(lambda: (s := _frame_state(browser))["missing"] == 2 and s["loaded"] == 2 and s,
                         what="the dropped method's cells to show n/a")
        assert state["step"] == "2" and browser.execute_script("return document.getElementById('epoch').max") == "2"
        cells = browser.execute_script(
            "return [...document.querySelectorAll('td.cell')].map(c => [c.dataset.state, c.innerText.trim()]);"
        )
        assert cells == [["missing", "n/a"], ["loaded", ""]] * 2
        wait_for(lambda: (s := _strips(browser)) and _strip_shows(s[0], "class_model", "a", 2), what="its strip")
        _slide(browser, 1)
        _slide(browser, 2)
        _slide(browser, 1)  # not epoch 1 (step 0), which the instrumented fetch holds back
        wait_for(lambda: (s := _frame_state(browser))["step"] == "1" and s["missing"] == 2 and s["loaded"] == 2,
                 what="epoch 2 of the dropped run")
        # No class models at epoch 2: the strip says so and shows no picture.
        strip, = _strips(browser)
        assert (strip["step"], strip["state"], strip["images"], strip["captions"]) == ("1", "missing", [], [])
        assert strip["note"] == "n/a: no class models logged at epoch 2" and strip["title"] == "class models: epoch 2"
    finally:
        browser.switch_to.default_content()


def test_a_signal_run_shows_its_curves_with_the_map_stretched_over_them(real_runs_server, browser):
    browser.get(f"{real_runs_server}/?darkMode=false{pinned(real_runs_server, 'signals/explanations')}")
    frame = wait_for(lambda: browser.find_elements("css selector", "iframe"), what="the plugin iframe")[0]
    browser.switch_to.frame(frame)
    try:
        wait_for(lambda: (s := _frame_state(browser)) and s["canvases"] == 4 and s["loaded"] == 4 and s["inputsLoaded"] == 2,
                 what="the signal run's cells to load")
        # Every cell is painted at the curves' size (256 x 96); the map's one row covers all of it,
        # so a column has one colour from top to bottom wherever the curves do not pass.
        cells = browser.execute_script(
            """
            return [...document.querySelectorAll('canvas.overlay')].map(c => {
              const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              const at = (x, y) => [...d.slice(4 * (y * c.width + x), 4 * (y * c.width + x) + 3)];
              return {width: c.width, height: c.height, top: at(2, 1), bottom: at(2, c.height - 2)};
            });
            """
        )
        assert all(c["width"] == 256 and c["height"] == 96 for c in cells)
        assert all(max(abs(a - b) for a, b in zip(c["top"], c["bottom"])) <= 2 for c in cells)
    finally:
        browser.switch_to.default_content()


def test_the_inside_view_shows_channel_images_and_top_patches_beside_the_class_models(real_runs_server, browser):
    browser.get(f"{real_runs_server}/?darkMode=false{pinned(real_runs_server, 'inside/explanations')}")
    frame = wait_for(lambda: browser.find_elements("css selector", "iframe"), what="the plugin iframe")[0]
    browser.switch_to.frame(frame)
    try:
        def strips_at(step):
            strips = _strips(browser)
            kinds = {s["kind"]: s for s in strips}
            done = (set(kinds) == {"class_model", "features", "top_patches"}
                    and all(s["step"] == str(step) and s["state"] == "shown" and s["images"]
                            and all(i["loaded"] and i["step"] == str(step) for i in s["images"]) for s in strips))
            return done and kinds

        kinds = wait_for(lambda: strips_at(1), what="the three strips at epoch 2")
        assert kinds["features"]["title"] == "channel images: epoch 2"
        assert kinds["top_patches"]["title"] == "top patches: epoch 2"
        assert len(kinds["features"]["images"]) == len(kinds["top_patches"]["images"]) == 4
        assert kinds["features"]["captions"] == kinds["top_patches"]["captions"]
        assert all(c.startswith("conv2 #") for c in kinds["features"]["captions"])
        # The epoch slider moves every strip, the inside view's with the class models.
        browser.execute_script(
            "const s = document.getElementById('epoch'); s.value = 0; s.dispatchEvent(new Event('input'));"
        )
        kinds = wait_for(lambda: strips_at(0), what="the three strips at epoch 1")
        assert kinds["features"]["title"] == "channel images: epoch 1"
    finally:
        browser.switch_to.default_content()
