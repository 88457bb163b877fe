"""The dashboard's grid in a real browser (app.js): filters and sort, runs side by side in their
TensorBoard colours, dark mode, keyboard, deep links, the detail view, a 1,000-image run and old
logs, against a real `tensorboard` on logs written with keras_interp.summary (headless Chromium)."""

import json
import math
import os
import re
import time
import urllib.parse
import urllib.request
import zipfile

import numpy as np
import pytest
import tensorflow as tf
import tensorboard
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys
from test_tb_browser import _serve, browser, pinned, select_runs, wait_for  # noqa: F401 - fixtures
from test_tb_plugin import legacy_map_metadata, write_class_models

from keras_interp import summary

CLASSES = ["cat", "dog", "bird"]
SIZE, EPOCHS = 12, 3
LABELS = [0, 1, 2, 0, 1, None]  # true classes of images 0-5 (image 5: unknown)
# The last epoch's predictions of run "alpha": image i is predicted PREDICTED[i] with CONFIDENCE[i].
PREDICTED = [0, 2, 2, 1, 1, 0]
CONFIDENCE = [0.9, 0.3, 0.6, 0.5, 0.8, 0.7]
ALPHA, BETA, OLD = (f"{name}/{summary.SUBDIR}" for name in ("alpha", "beta", "old"))
GAMMA, LIVE = (f"{name}/{summary.SUBDIR}" for name in ("gamma", "live"))
rng = np.random.default_rng(0)
INPUTS = rng.integers(0, 256, size=(len(LABELS), SIZE, SIZE, 3), dtype=np.uint8)
RAMP = np.arange(SIZE, dtype=np.uint8)[None, :].repeat(SIZE, axis=0) * 23  # old map: 0 at the left, 253 at the right
NAN = float("nan")
# Per-image quality of the saliency maps per epoch (NaN: unknown); gradcam's are these reversed.
DELETION = {0: [0.2, 0.4, 0.6, 0.8, 0.1, 0.3], 1: [0.9, 0.4, 0.1, NAN, 0.2, 0.3], 2: [0.5, 0.1, NAN, 0.3, 0.9, 0.2]}
POINTING = {0: [0, 0, 0, 0, 0, 0], 1: [0, 1, 0, 1, NAN, 0], 2: [1, 0, 1, NAN, 0, 1]}


def _write(logdir, run, body):
    writer = tf.summary.create_file_writer(os.path.join(logdir, *run.split("/")))
    with writer.as_default():
        body()
    writer.close()


# Run "gamma": maps of methods that declare their sign and default clip, over black inputs (a drawn
# pixel is the colour itself). CAM: a relu'd map with zeros; occlusion, declared signed: image 0's
# minimum is exactly 0, image 1 has negative values; saliency: positive everywhere.
_relu = np.maximum(rng.normal(size=(2, SIZE, SIZE)), 0)
_occlusion = rng.uniform(0, 1, size=(2, SIZE, SIZE))
_occlusion[0] -= _occlusion[0].min()
_occlusion[1] -= 0.4
DECLARED = {  # method -> (signed, clip, maps of images 0 and 1)
    "gradcam": (False, [0, 99.9], _relu),
    "occlusion": (True, [0, 99.9], _occlusion),
    "saliency": (False, [62, 99.9], rng.uniform(0.1, 1, size=(2, SIZE, SIZE))),
}


def _declared_run():
    for i in range(2):
        summary.write_input(i, np.zeros((SIZE, SIZE, 3), np.uint8), 0, label=0, class_names=CLASSES)
        for method, (signed, clip, maps) in DECLARED.items():
            summary.write_map(method, i, maps[i], 0, signed=signed, clip=clip)


LIVE_MAPS = rng.normal(size=(6, SIZE, SIZE))


def _live_epoch(epoch):
    if epoch == 0:
        summary.write_input(0, INPUTS[0], 0, label=0, class_names=CLASSES)
    summary.write_map("saliency", 0, LIVE_MAPS[epoch], epoch)


def _analysis_run(predicted_last, confidence_last):
    def body():
        for epoch in range(EPOCHS):
            last = epoch == EPOCHS - 1
            for i, label in enumerate(LABELS):
                if epoch == 0:
                    summary.write_input(i, INPUTS[i], 0, label=label, class_names=CLASSES)
                # Earlier epochs predict class 0 for every image at 50%.
                predicted, p = (predicted_last[i], confidence_last[i]) if last else (0, 0.5)
                explained = predicted if label is None else label
                summary.write_prediction(i, predicted, p, explained, 1 - p, epoch)
                for method in ("gradcam", "saliency"):
                    summary.write_map(method, i, rng.normal(size=(SIZE, SIZE)), epoch)
            for method, order in (("saliency", 1), ("gradcam", -1)):
                summary.write_quality(method, {"pointing_game": POINTING[epoch][::order], "deletion_auc": DELETION[epoch][::order]}, epoch)
            write_class_models([epoch], labels=CLASSES)
    return body


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("grid_logs"))
    # A run of scalars only (as keras.callbacks.TensorBoard writes), started first: TensorBoard gives
    # it the first colour, and the dashboard's runs the next ones.
    _write(path, "a_train", lambda: tf.summary.scalar("loss", 1.0, step=0))
    _write(path, ALPHA, _analysis_run(PREDICTED, CONFIDENCE))
    _write(path, BETA, _analysis_run(PREDICTED[::-1], CONFIDENCE[::-1]))

    def old():  # the logger before metadata version 3: grey PNGs, no tEXt chunk, no range
        for i in range(2):
            summary.write_input(i, INPUTS[i], 0, label=LABELS[i], class_names=CLASSES)
            tf.summary.write(summary.map_tag("saliency", i), tf.constant([summary.encode_png(RAMP)]), step=0,
                             metadata=legacy_map_metadata("saliency", i))
    _write(path, OLD, old)
    _write(path, GAMMA, _declared_run)
    _write(path, LIVE, lambda: [_live_epoch(e) for e in range(2)])
    for url in _serve(path, "true", "", runs=5):
        url.logdir = path
        yield url


BIG_IMAGES = 1000


@pytest.fixture(scope="module")
def big_server(tmp_path_factory):
    """1,000 images of 8 x 8 x 2 methods x 2 epochs, from a few precomputed maps (written in seconds)."""
    path = str(tmp_path_factory.mktemp("big_logs"))
    pictures = rng.integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8)
    maps = rng.normal(size=(4, 8, 8))

    def body():
        for i in range(BIG_IMAGES):
            summary.write_input(i, pictures[i % 4], 0, label=i % 3, class_names=CLASSES)
            for epoch in range(2):
                for method in ("saliency", "gradcam"):
                    summary.write_map(method, i, maps[(i + epoch) % 4], epoch)
    _write(path, "big/explanations", body)
    for url in _serve(path, "true", "", runs=1):
        def complete():
            with urllib.request.urlopen(f"{url}/data/plugin/keras_interp/runs", timeout=10) as response:
                info = json.load(response)["runs"]["big/explanations"]
            return len(info["images"]) == BIG_IMAGES and info["steps"] == [0, 1]
        wait_for(complete, timeout=90, what="tensorboard to load the 1,000 images")
        yield url


def open_dashboard(driver, url, fragment=None, query="?darkMode=false"):
    """A fresh page (not a same-document hash change) on the dashboard, switched into its frame;
    `fragment` None: pinned(url)."""
    fragment = pinned(url) if fragment is None else fragment
    driver.switch_to.default_content()
    driver.get("about:blank")
    driver.get(f"{url}/{query}{fragment}")
    frame = wait_for(lambda: driver.find_elements("css selector", "iframe"), what="the plugin iframe")[0]
    driver.switch_to.frame(frame)
    wait_for(lambda: driver.execute_script("const g = document.getElementById('grid'); return g && g.dataset.step"),
             what="the grid")


def grid_state(driver):
    return driver.execute_script(
        """
        const grid = document.getElementById('grid');
        const inView = (node) => { const r = node.getBoundingClientRect(); return r.bottom > 0 && r.top < innerHeight; };
        const rows = [...document.querySelectorAll('tr.image-row')];
        const cells = [...document.querySelectorAll('td.cell')];
        return {
          step: grid.dataset.step, count: grid.dataset.rows, orderStep: grid.dataset.orderStep,
          rows: rows.map(r => Number(r.dataset.index)),
          rowsInView: rows.filter(inView).map(r => Number(r.dataset.index)),
          cells: cells.length,
          loaded: cells.filter(c => c.dataset.state === 'loaded' && c.querySelector('canvas').width > 1).length,
          missing: cells.filter(c => c.dataset.state === 'missing').length,
          groups: [...document.querySelectorAll('#grid th.run-group')].map(th => th.textContent),
          columns: [...document.querySelectorAll('#grid tr.columns th')].map(th => th.textContent),
        };
        """
    )


def choose(driver, element_id, value, event="change"):
    driver.execute_script(
        "const e = document.getElementById(arguments[0]); e.value = arguments[1]; e.dispatchEvent(new Event(arguments[2]));",
        element_id, str(value), event,
    )


def rows_after(driver, element_id, value, step="2", ordered=("", "2")):
    """Set a filter or sort control; the rows (image indices, in order) once the grid follows it
    (the order computed at one of the `ordered` steps: "" for an order that needs no predictions)."""
    choose(driver, element_id, value)

    def settled():
        s = grid_state(driver)
        return s["orderStep"] in ordered and s["orderStep"] in ("", step) and s["count"] == str(len(s["rows"])) \
            and s["loaded"] == 2 * len(s["rows"]) and s
    return wait_for(settled, what=f"the grid after {element_id}={value}")["rows"]


def test_filters_and_sort_choose_and_order_the_rows(server, browser):  # noqa: F811
    open_dashboard(browser, server)
    try:
        assert wait_for(lambda: (s := grid_state(browser))["loaded"] == 12 and s)["rows"] == list(range(6))
        wait_for(lambda: browser.execute_script(
            "return [...document.querySelectorAll('.caption')].every(c => c.dataset.step === '2')"), what="the captions")
        truth = [(i, label) for i, label in enumerate(LABELS) if label is not None]
        correct = [i for i, label in truth if PREDICTED[i] == label]
        wrong = [i for i, label in truth if PREDICTED[i] != label]
        # The captions asked for their block only: the first filter asks for the whole epoch's
        # predictions (the rows stay as they were until they are in); the next ones apply at once.
        assert rows_after(browser, "filter-correct", "correct", ordered=("2",)) == correct == [0, 2, 4]
        assert rows_after(browser, "filter-correct", "wrong") == wrong == [1, 3]
        assert rows_after(browser, "filter-correct", "all") == list(range(6))  # image 5 (no label) only here
        assert rows_after(browser, "filter-true", 0) == [i for i, label in truth if label == 0] == [0, 3]
        assert rows_after(browser, "filter-true", "") == list(range(6))
        assert rows_after(browser, "filter-pred", 2) == [i for i in range(6) if PREDICTED[i] == 2] == [1, 2]
        options = browser.execute_script("return [...document.getElementById('filter-pred').options].map(o => o.text)")
        assert options == ["any", "0: cat", "1: dog", "2: bird"]
        # The filter follows the epoch: at epoch 1 every image was predicted cat.
        choose(browser, "epoch", 0, "input")
        wait_for(lambda: (s := grid_state(browser))["orderStep"] == "0" and s["count"] == "0" and s["rows"] == [],
                 what="no bird predicted at epoch 1")
        choose(browser, "filter-pred", "")
        wait_for(lambda: grid_state(browser)["rows"] == list(range(6)), what="all rows at epoch 1")
        choose(browser, "epoch", 2, "input")
        by_confidence = sorted(range(6), key=lambda i: -CONFIDENCE[i])
        assert rows_after(browser, "sort", "conf-desc") == by_confidence == [0, 4, 5, 2, 3, 1]
        assert rows_after(browser, "sort", "conf-asc") == by_confidence[::-1]
        assert rows_after(browser, "sort", "expl-desc") == by_confidence[::-1]  # explained probability = 1 - p
        assert rows_after(browser, "sort", "index") == list(range(6))
        count = browser.execute_script("return document.getElementById('row-count').textContent")
        assert count == "6 of 6 images"
    finally:
        browser.switch_to.default_content()


def tensorboard_palette():
    """TensorBoard's default run colours (light, dark), read from the installed frontend bundle."""
    bundle = os.path.join(os.path.dirname(tensorboard.__file__), "webfiles.zip")
    with zipfile.ZipFile(bundle) as archive:
        source = archive.read("index.js").decode("utf-8")
    block = re.search(r'colorPalette:\{id:"default".*?colors:\[(.*?)\]', source).group(1)
    return re.findall(r'lightHex:"(#[0-9a-f]{6})",darkHex:"(#[0-9a-f]{6})"', block)


def rgb(hex_colour):
    return "rgb({}, {}, {})".format(*(int(hex_colour[k:k + 2], 16) for k in (1, 3, 5)))


def run_colours(driver):
    return driver.execute_script(
        "return [...document.querySelectorAll('#grid th.run-group')].map(th => [th.textContent, getComputedStyle(th).borderTopColor,"
        " getComputedStyle(document.querySelector(`#runs label[data-run=\"${th.dataset.run}\"] .swatch`)).backgroundColor]);"
    )


def test_two_runs_side_by_side_in_tensorboard_run_colours(server, browser):  # noqa: F811
    with urllib.request.urlopen(f"{server}/data/runs") as response:
        order = json.load(response)  # TensorBoard colours its runs in this order
    palette = tensorboard_palette()
    assert len(palette) == 7
    open_dashboard(browser, server)
    try:
        select_runs(browser, [ALPHA, BETA])
        state = wait_for(lambda: (s := grid_state(browser))["loaded"] == 24 and s, what="two runs side by side")
        assert state["groups"] == [ALPHA, BETA]
        assert state["columns"] == ["input", "gradcam @3", "saliency @3"] * 2
        cells = browser.execute_script(  # one column group per run: input, then its methods
            "return [...document.querySelector('tr.image-row').children].map(td => td.className);")
        assert cells == ["input-cell group-start", "cell", "cell"] * 2
        expected = [[run, rgb(palette[order.index(run) % 7][0]), rgb(palette[order.index(run) % 7][0])] for run in (ALPHA, BETA)]
        assert run_colours(browser) == expected
        assert order[0] == "a_train" and expected[0][1] != expected[1][1]
        # Captions are each run's own predictions (beta's are alpha's reversed).
        captions = browser.execute_script(
            "return [...document.querySelector('tr.image-row').querySelectorAll('.caption')].map(c => c.textContent);")
        # The explained class is the predicted one: said once.
        assert captions == ["predicted cat (90.0%)", "predicted cat (70.0%)"]
    finally:
        browser.switch_to.default_content()


def page_colours(driver):
    return driver.execute_script(
        "const card = document.querySelector('.card');"
        "return [document.documentElement.dataset.theme, getComputedStyle(document.body).backgroundColor,"
        " getComputedStyle(card).backgroundColor, getComputedStyle(document.body).color];"
    )


def test_dark_mode_follows_tensorboard_and_the_system_setting(server, browser):  # noqa: F811
    with urllib.request.urlopen(f"{server}/data/runs") as response:
        first = json.load(response).index(ALPHA)
    palette = tensorboard_palette()
    open_dashboard(browser, server)
    try:
        assert page_colours(browser) == ["light", "rgb(245, 246, 247)", "rgb(255, 255, 255)", "rgb(33, 33, 33)"]
        # TensorBoard's dark theme is body.dark-mode on its own document.
        browser.execute_script("window.parent.document.body.classList.add('dark-mode')")
        wait_for(lambda: page_colours(browser)[0] == "dark", what="the dark theme")
        assert page_colours(browser)[1:] == ["rgb(48, 48, 48)", "rgb(58, 58, 58)", "rgb(232, 232, 232)"]
        assert run_colours(browser)[0][1] == rgb(palette[first % 7][1])  # the run's dark-theme colour
        browser.execute_script("window.parent.document.body.classList.remove('dark-mode')")
        wait_for(lambda: page_colours(browser)[0] == "light", what="the light theme again")
        # With the system in dark mode and no override, TensorBoard goes dark and the dashboard with it;
        # the plugin page on its own follows prefers-color-scheme.
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        open_dashboard(browser, server, query="")
        wait_for(lambda: page_colours(browser)[:2] == ["dark", "rgb(48, 48, 48)"], what="dark from the system setting")
        assert browser.execute_script("return window.parent.document.body.classList.contains('dark-mode')")
        browser.switch_to.default_content()
        browser.get(f"{server}/data/plugin_entry.html?name=keras_interp")
        wait_for(lambda: browser.execute_script("return document.getElementById('grid') && document.documentElement.dataset.theme")
                 == "dark", what="the page on its own, dark")
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        browser.switch_to.default_content()


def test_arrow_keys_move_the_epoch_except_in_a_control(server, browser):  # noqa: F811
    open_dashboard(browser, server)
    try:
        assert grid_state(browser)["step"] == "2"
        browser.execute_script("document.getElementById('download').focus()")
        ActionChains(browser).send_keys(Keys.ARROW_LEFT).perform()
        wait_for(lambda: grid_state(browser)["step"] == "1", what="epoch 2")
        ActionChains(browser).send_keys(Keys.ARROW_LEFT).send_keys(Keys.ARROW_LEFT).perform()
        wait_for(lambda: grid_state(browser)["step"] == "0", what="epoch 1 (and no further)")
        ActionChains(browser).send_keys(Keys.ARROW_RIGHT).perform()
        state = wait_for(lambda: (s := grid_state(browser))["step"] == "1" and s["loaded"] == 12 and s, what="epoch 2 again")
        assert browser.execute_script("return document.getElementById('epoch-label').textContent") == "2 (step 1)"
        # In a slider of the settings, arrows move that slider, not the epoch.
        low = float(browser.execute_script("const e = document.getElementById('clip-low'); e.focus(); return e.value"))
        ActionChains(browser).send_keys(Keys.ARROW_RIGHT).perform()
        wait_for(lambda: float(browser.execute_script("return document.getElementById('clip-low').value")) == round(low + 0.1, 1),
                 what="clip-low")
        assert grid_state(browser)["step"] == state["step"] == "1"
    finally:
        browser.switch_to.default_content()


def controls(driver):
    return driver.execute_script(
        """
        const value = (id) => document.getElementById(id).value;
        return {
          runs: [...document.querySelectorAll('#runs input[data-run]')].filter(b => b.checked).map(b => b.dataset.run),
          methods: [...document.querySelectorAll('#methods input[data-method]')].map(b => [b.dataset.method, b.checked]),
          epoch: document.getElementById('epoch-label').textContent, compare: document.getElementById('compare').checked,
          epochB: document.getElementById('epoch-b-label').textContent,
          filters: [value('filter-true'), value('filter-pred'), value('filter-correct'), value('sort')],
          settings: [value('polarity'), value('clip-low'), value('clip-high'), value('colormap'), value('opacity'), value('mode'), value('size')],
          boxWidth: document.querySelector('td.cell .box').getBoundingClientRect().width,
        };
        """
    )


def test_a_deep_link_restores_the_view(server, browser):  # noqa: F811
    open_dashboard(browser, server)
    try:
        select_runs(browser, [ALPHA, BETA])
        browser.execute_script("const c = document.getElementById('compare'); c.checked = true; c.dispatchEvent(new Event('change'));")
        choose(browser, "epoch", 1, "input")
        choose(browser, "epoch-b", 0, "input")
        browser.execute_script("const b = document.querySelector('#methods input[data-method=\"gradcam\"]');"
                               "b.checked = false; b.dispatchEvent(new Event('change'));")
        choose(browser, "filter-correct", "wrong")
        choose(browser, "sort", "conf-asc")
        for element_id, value, event in (("polarity", "both", "change"), ("clip-low", 50, "input"), ("clip-high", 99, "input"),
                                         ("colormap", "viridis", "change"), ("opacity", 0.7, "input"), ("mode", "outline", "change"),
                                         ("size", 96, "input")):
            choose(browser, element_id, value, event)
        browser.execute_script("document.getElementById('charts-details').open = false")  # the Scalars card closed
        before = controls(browser)
        assert before["runs"] == [ALPHA, BETA] and before["settings"][-1] == "96" and before["boxWidth"] == 96
        # At epoch 2 every image was predicted cat: the wrong ones are those whose class is not cat.
        wrong = [i for i, label in enumerate(LABELS) if label not in (None, 0)]
        wait_for(lambda: (s := grid_state(browser))["rows"] == wrong and s["orderStep"] == "1", what="the filtered rows")
        browser.switch_to.default_content()
        link = wait_for(lambda: (u := browser.current_url) and "size%3D96" in u and "scalars%3D0" in u and u, what="the view in the URL")
        assert link.split("#")[1].startswith("keras_interp&ki=")

        open_dashboard(browser, server, fragment="#" + link.split("#", 1)[1], query="?" + link.split("?", 1)[1].split("#")[0])
        state = wait_for(lambda: (s := grid_state(browser))["rows"] == wrong and s["orderStep"] == "1"
                         and s["loaded"] == 4 * len(wrong) and s, what="the restored view")
        assert controls(browser) == before
        assert browser.execute_script("return document.getElementById('charts-details').open") is False
        assert state["groups"] == [ALPHA, BETA] and state["columns"] == ["input", "saliency @2", "saliency @1"] * 2
        assert before["epoch"] == "2 (step 1)" and before["epochB"] == "1 (step 0)" and before["compare"]
        assert before["methods"] == [["gradcam", False], ["saliency", True]]
        assert before["filters"] == ["", "", "wrong", "conf-asc"]
        assert before["settings"] == ["both", "50", "99", "viridis", "0.7", "outline", "96"]
    finally:
        browser.switch_to.default_content()


def best_first(values, ascending):
    """Image indices by value, best first (ties by index), the unknown (NaN) last."""
    known = sorted((i for i, v in enumerate(values) if not math.isnan(v)), key=lambda i: (values[i] if ascending else -values[i], i))
    return known + [i for i, v in enumerate(values) if math.isnan(v)]


def test_sort_by_a_quality_measure_at_the_chosen_epoch_and_in_a_deep_link(server, browser):  # noqa: F811
    open_dashboard(browser, server)
    try:
        wait_for(lambda: grid_state(browser)["loaded"] == 12, what="the grid")
        sorts = browser.execute_script("return [...document.getElementById('sort').options].map(o => [o.value, o.text])")
        assert sorts[5:] == [[f"quality/{m}/{q}", f"{m}: {q}"] for m in ("gradcam", "saliency") for q in ("pointing_game", "deletion_auc")]
        # Deletion AUC: lower is more faithful, so low first; the unknown last.
        assert rows_after(browser, "sort", "quality/saliency/deletion_auc") == best_first(DELETION[2], True) == [1, 5, 3, 0, 4, 2]
        # Each cell's tooltip: its image's measures for its method at this epoch.
        titles = browser.execute_script(
            "return [1, 3].map(i => document.querySelector(`tr.image-row[data-index=\"${i}\"] td.cell:nth-child(3)`).title);")
        assert titles == ["pointing_game: 0\ndeletion_auc: 0.1", "pointing_game: n/a\ndeletion_auc: 0.3"]
        assert rows_after(browser, "sort", "quality/saliency/pointing_game") == best_first(POINTING[2], False) == [0, 2, 5, 1, 4, 3]
        assert rows_after(browser, "sort", "quality/gradcam/deletion_auc") == best_first(DELETION[2][::-1], True) == [4, 0, 2, 5, 1, 3]
        assert rows_after(browser, "sort", "quality/saliency/deletion_auc") == [1, 5, 3, 0, 4, 2]
        # Another epoch: that epoch's values decide.
        choose(browser, "epoch", 1, "input")
        expected = best_first(DELETION[1], True)
        assert expected == [2, 4, 5, 1, 0, 3]
        wait_for(lambda: (s := grid_state(browser))["rows"] == expected and s["orderStep"] == "1", what="the rows at epoch 2")
        browser.switch_to.default_content()
        link = wait_for(lambda: (u := browser.current_url) and "sort%3Dquality" in u and "step%3D1" in u and u, what="the sort in the URL")

        open_dashboard(browser, server, fragment="#" + link.split("#", 1)[1])
        wait_for(lambda: (s := grid_state(browser))["rows"] == expected and s["orderStep"] == "1" and s["loaded"] == 12,
                 what="the restored sort")
        assert controls(browser)["filters"] == ["", "", "all", "quality/saliency/deletion_auc"]
        assert controls(browser)["epoch"] == "2 (step 1)"
    finally:
        browser.switch_to.default_content()


NO_STEPS = """
const original = window.fetch;
window.fetch = async function (input, init) {
  const response = await original.call(this, input, init);
  if (!String((input && input.url) || input).endsWith('/plugin/keras_interp/runs')) return response;
  const body = await response.json();
  for (const info of Object.values(body.runs)) {
    info.steps = [];
    for (const m of Object.keys(info.method_steps || {})) info.method_steps[m] = [];
    for (const k of Object.keys(info.pictures || {})) info.pictures[k].steps = [];
  }
  return new Response(JSON.stringify(body), { status: 200, headers: { 'Content-Type': 'application/json' } });
};
"""


def test_runs_without_steps_show_na_not_nan(server, browser):  # noqa: F811
    # /runs answered with no steps (a run read while its first epoch is being written).
    script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": NO_STEPS})["identifier"]
    try:
        open_dashboard(browser, server)
        state = wait_for(lambda: (s := grid_state(browser))["missing"] == 12 and s, what="the grid without steps")
        assert state["step"] == "none" and state["columns"] == ["input", "gradcam @n/a", "saliency @n/a"]
        text = browser.execute_script("return [document.getElementById('epoch-label').textContent,"
                                      " document.querySelector('.strip-title').textContent, document.body.innerText]")
        assert text[:2] == ["n/a", "class models: epoch n/a"] and "NaN" not in text[2]
    finally:
        browser.switch_to.default_content()
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script})


def test_a_reloaded_frame_leaves_no_listener_on_tensorboards_window(server, browser):  # noqa: F811
    open_dashboard(browser, server)
    browser.switch_to.default_content()
    # TensorBoard's window counts the hashchange listeners added to and removed from it from now on.
    browser.execute_script(
        "window.__hash = new Set(); const add = window.addEventListener, remove = window.removeEventListener;"
        "window.addEventListener = function (type, fn, ...rest) { if (type === 'hashchange') window.__hash.add(fn); return add.call(this, type, fn, ...rest); };"
        "window.removeEventListener = function (type, fn, ...rest) { if (type === 'hashchange') window.__hash.delete(fn); return remove.call(this, type, fn, ...rest); };"
        "document.querySelector('iframe').contentWindow.location.reload();")
    # Right after reload() the frame may still show the old document (its grid ready, its listener
    # already removed): wait for the new frame's grid and its one listener together.
    wait_for(lambda: browser.execute_script(
        "const d = document.querySelector('iframe').contentDocument, g = d && d.getElementById('grid');"
        "return window.__hash.size === 1 && g && g.dataset.step"), what="the reloaded frame and its one listener")
    for reload in (True, False):  # a reload, then the frame removed, as TensorBoard may do
        browser.execute_script("const f = document.querySelector('iframe'); arguments[0] ? f.contentWindow.location.reload() : f.remove();", reload)
        wait_for(lambda: browser.execute_script(
            "const f = document.querySelector('iframe'), g = f && f.contentDocument.getElementById('grid');"
            "return window.__hash.size === (arguments[0] ? 1 : 0) && (!arguments[0] || (g && g.dataset.step));", reload),
            what="one listener per frame shown")


def test_clicking_a_cell_opens_the_detail_view_with_a_filmstrip_and_class_models(server, browser):  # noqa: F811
    open_dashboard(browser, server)
    try:
        wait_for(lambda: grid_state(browser)["loaded"] == 12, what="the grid")
        browser.find_element("css selector", 'tr.image-row[data-index="1"] td.cell:nth-child(3)').click()
        detail = wait_for(lambda: browser.execute_script(
            """
            const d = document.getElementById('detail');
            return d && d.dataset.state === 'loaded' && {
              title: document.getElementById('detail-title').textContent,
              frames: [...d.querySelectorAll('.frame')].map(f => f.dataset.step),
              pictures: [...d.querySelectorAll('img.detail-picture')].map(i => new URL(i.src).searchParams.get('tag') + '@' + new URL(i.src).searchParams.get('step')),
              caption: document.getElementById('detail-caption').textContent,
            };
            """), what="the detail view")
        assert detail["title"] == f"{ALPHA} · saliency · image 1"
        assert detail["frames"] == [str(s) for s in range(EPOCHS)]
        assert detail["pictures"] == [f"keras_interp/class_model/{k:03d}@2" for k in range(3)]
        assert detail["caption"] == "predicted bird (30.0%), explaining dog (70.0%)"
        # The caption follows the epoch selected in the view: at epoch 1 every image was predicted cat at 50%.
        browser.find_element("css selector", '#detail .frame[data-step="0"]').click()
        wait_for(lambda: browser.execute_script("return document.getElementById('detail-caption').textContent")
                 == "predicted cat (50.0%), explaining dog (50.0%)", what="epoch 1's caption")
        ActionChains(browser).send_keys(Keys.ESCAPE).perform()
        wait_for(lambda: browser.execute_script("return !document.getElementById('detail')"), what="the view to close")
    finally:
        browser.switch_to.default_content()


def test_download_png_draws_the_rows_in_view(server, browser):  # noqa: F811
    open_dashboard(browser, server)
    try:
        wait_for(lambda: grid_state(browser)["loaded"] == 12, what="the grid")
        # (TensorBoard's CSP lets the frame show blob: URLs, not fetch them: the blob is kept as it is made.)
        browser.execute_script(
            "window.__downloads = []; window.__blobs = new Map(); const make = URL.createObjectURL;"
            "URL.createObjectURL = (blob) => { const url = make(blob); window.__blobs.set(url, blob); return url; };"
            "HTMLAnchorElement.prototype.click = function () { window.__downloads.push([this.download, this.href]); };"
            "document.getElementById('download').click();")
        name, href = wait_for(lambda: browser.execute_script("return window.__downloads[0]"), what="the download")
        assert name == "explanations_epoch_3.png"
        # The line under the title says how the picture was drawn.
        line = wait_for(lambda: browser.execute_script("return document.getElementById('download').dataset.settings"), what="the settings")
        assert line == "epoch 3 · polarity auto · clip per method · colormap jet · heat (opacity 0.5) · filters: none"
        picture = browser.execute_async_script(
            """
            const done = arguments[arguments.length - 1], blob = window.__blobs.get(arguments[0]);
            (async () => {
              const head = [...new Uint8Array(await blob.slice(0, 8).arrayBuffer())];
              const bitmap = await createImageBitmap(blob);
              const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
              const ctx = canvas.getContext('2d');
              ctx.drawImage(bitmap, 0, 0);
              const data = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
              const colours = new Set();
              for (let p = 0; p < data.length; p += 4) colours.add((data[p] << 16) | (data[p + 1] << 8) | data[p + 2]);
              done({ type: blob.type, head, width: bitmap.width, height: bitmap.height, colours: colours.size });
            })().catch((error) => done({ error: String(error) }));
            """, href)
        assert "error" not in picture, picture
        assert picture["type"] == "image/png" and picture["head"] == [137, 80, 78, 71, 13, 10, 26, 10]
        # Two columns of 128 px beside an input column, six rows of 128 px: the inputs' random pixels show.
        assert picture["width"] >= 3 * 128 and picture["height"] >= 6 * 128 and picture["colours"] > 500
    finally:
        browser.switch_to.default_content()


def test_old_logs_open_and_paint(server, browser):  # noqa: F811
    open_dashboard(browser, server)
    try:
        select_runs(browser, [OLD])
        wait_for(lambda: (s := grid_state(browser))["loaded"] == 2 and s["step"] == "0", what="the old run's maps")
        # The grey ramp decodes to 0 at the left and 1 at the right: the left column shows the input
        # (below the low cut), the right one is coloured over it.
        left, right, inputs = browser.execute_script(
            """
            const canvas = document.querySelector('tr.image-row[data-index="0"] canvas.overlay');
            const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            const img = document.querySelector('tr.image-row[data-index="0"] img.input');
            const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
            const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
            const i = ctx.getImageData(0, 0, c.width, c.height).data;
            const at = (data, x, y) => [...data.slice(4 * (y * canvas.width + x), 4 * (y * canvas.width + x) + 3)];
            return [at(d, 0, 5), at(d, canvas.width - 1, 5), [at(i, 0, 5), at(i, canvas.width - 1, 5)]];
            """)
        assert left == inputs[0] == INPUTS[0][5, 0].tolist()
        assert right != inputs[1] and inputs[1] == INPUTS[0][5, SIZE - 1].tolist()
    finally:
        browser.switch_to.default_content()


def test_a_thousand_images_scroll_to_the_bottom_with_few_rows_in_the_dom(big_server, browser):  # noqa: F811
    open_dashboard(browser, big_server)
    try:
        browser.execute_script("performance.setResourceTimingBufferSize(100000)")
        first = wait_for(lambda: (s := grid_state(browser))["rowsInView"] and s["loaded"] >= 2 * len(s["rowsInView"]) and s,
                         what="the first rows")
        assert first["count"] == str(BIG_IMAGES) and first["rows"][0] == 0 and len(first["rows"]) < 40
        height = browser.execute_script("return document.documentElement.scrollHeight")
        row = browser.execute_script("return document.querySelector('tr.image-row').getBoundingClientRect().height")
        assert height >= BIG_IMAGES * row  # the spacers keep the scrollbar true
        for fraction in (0.25, 0.5, 0.75, 1.0):  # as a user drags the scrollbar
            browser.execute_script("window.scrollTo(0, arguments[0] * document.documentElement.scrollHeight)", fraction)
            state = wait_for(lambda: (s := grid_state(browser))["rowsInView"]
                             and all(c == "loaded" for c in browser.execute_script(
                                 "return [...document.querySelectorAll('tr.image-row')].filter(r => {"
                                 " const b = r.getBoundingClientRect(); return b.bottom > 0 && b.top < innerHeight; })"
                                 ".flatMap(r => [...r.querySelectorAll('td.cell')].map(c => c.dataset.state))"))
                             and s, what=f"the rows at {fraction:.0%} to load")
            assert len(state["rows"]) < 40
        assert state["rowsInView"][-1] == BIG_IMAGES - 1
        requests = browser.execute_script(
            "const e = performance.getEntriesByType('resource');"
            "return [e.filter(x => x.name.includes('/image?')).length, e.filter(x => x.name.includes('/predictions?')).length];")
        # The rows in view only: their images, and /predictions for their blocks of 64 images (at
        # most two blocks in view at each of the 5 places), never the whole run.
        assert requests[0] < 400 and 1 <= requests[1] <= 10
        assert not browser.execute_script("return performance.getEntriesByType('resource').some(e => "
                                          "e.name.includes('/predictions?') && !e.name.includes('images='))")
        # The link keeps the scroll position: a new page opens at the bottom rows.
        browser.switch_to.default_content()
        link = wait_for(lambda: (u := browser.current_url) and "at%3D" in u and u, what="the scroll position in the URL")
        open_dashboard(browser, big_server, fragment="#" + link.split("#", 1)[1])
        wait_for(lambda: BIG_IMAGES - 1 in (s := grid_state(browser))["rowsInView"] and len(s["rows"]) < 40,
                 what="the bottom rows in a new page")
    finally:
        browser.switch_to.default_content()


CELL_PIXELS = """
return [...document.querySelectorAll('tr.image-row')].map((row) => [...row.querySelectorAll('td.cell')].map((td) => {
  const c = td.querySelector('canvas');
  return [td.dataset.state, [...c.getContext('2d').getImageData(0, 0, c.width, c.height).data]];
}));
"""


def painted(flat):
    """RGB of a cell painted over a black input, and the mask of the pixels drawn."""
    rgb = np.asarray(flat, np.int64).reshape(SIZE, SIZE, 4)[..., :3]
    return rgb, rgb.any(axis=-1)


def parent_ki(driver):
    hash_ = driver.execute_script("return window.parent.location.hash")
    part = next((p for p in hash_.lstrip("#").split("&") if p.startswith("ki=")), "ki=")
    return urllib.parse.parse_qs(urllib.parse.unquote(part[3:]))


def test_each_method_draws_with_its_own_polarity_and_clip(server, browser):  # noqa: F811
    open_dashboard(browser, server)
    try:
        select_runs(browser, [GAMMA])
        wait_for(lambda: (s := grid_state(browser))["loaded"] == 6 and s["columns"] == ["input", "gradcam @1", "occlusion @1", "saliency @1"],
                 what="the declared run")
        rows = browser.execute_script(CELL_PIXELS)
        for i in range(2):
            cam, occlusion, saliency = (painted(cell[1]) for cell in rows[i])
            relu, occ, sal = (DECLARED[m][2][i] for m in ("gradcam", "occlusion", "saliency"))
            # CAM: its default clip [0, 99.9] draws every nonzero pixel; saliency's [62, 99.9] about 38%.
            np.testing.assert_array_equal(cam[1], relu > 0)
            assert abs(int(saliency[1].sum()) - int((sal > np.percentile(sal, 62)).sum())) <= 1 and 0.3 < saliency[1].mean() < 0.45
            # Occlusion is declared signed: diverging on both images, image 0 (minimum exactly 0) included.
            rgb, mask = occlusion
            positive, negative = rgb[mask & (occ > 0)], rgb[mask & (occ < 0)]
            assert len(positive) and (positive[:, 0] > positive[:, 1]).all() and (positive[:, 0] > positive[:, 2]).all(), f"image {i}: red"
            assert (negative[:, 2] > negative[:, 0]).all() and len(negative) == (i == 1) * len(negative)
        mode = lambda: browser.execute_script(
            "return [document.getElementById('clip-mode').textContent, document.getElementById('clip-low').value,"
            " document.getElementById('clip-high').value, document.getElementById('clip-reset').disabled]")
        assert mode() == ["clip: per method (each its default) ", "0", "99.9", True]  # the first column's (gradcam's)
        # The colormap control says which shown column it does not colour: occlusion, declared signed.
        assert browser.execute_script(
            "const c = document.getElementById('colormap'); return [c.dataset.overridden,"
            " document.getElementById('colormap-note').textContent]") == ["some", "red (+) / blue (-), not the colormap: occlusion"]
        browser.switch_to.default_content()
        assert "lo%3D" not in browser.current_url
        browser.switch_to.frame(browser.find_elements("css selector", "iframe")[0])
        # Moving a handle: one clip for all columns, in the URL; reset: each method's own again.
        choose(browser, "clip-low", 62, "input")
        cams = lambda: [painted(row[0][1])[1].sum() for row in browser.execute_script(CELL_PIXELS)]
        expected = [int((DECLARED["gradcam"][2][i] > np.percentile(DECLARED["gradcam"][2][i], 62)).sum()) for i in range(2)]
        wait_for(lambda: all(abs(a - b) <= 1 for a, b in zip(cams(), expected)), what="gradcam clipped at 62")
        assert mode()[0] == "clip: all methods " and mode()[3] is False
        wait_for(lambda: parent_ki(browser).get("lo") == ["62"] and parent_ki(browser).get("hi") == ["99.9"], what="the clip in the URL")
        # The detail view draws as its cell does.
        browser.find_element("css selector", 'tr.image-row[data-index="0"] td.cell').click()
        detail = wait_for(lambda: browser.execute_script(
            "const d = document.getElementById('detail'), c = document.getElementById('detail-overlay');"
            "return d && d.dataset.state === 'loaded' && [...c.getContext('2d').getImageData(0, 0, c.width, c.height).data];"),
            what="the detail view")
        assert detail == browser.execute_script(CELL_PIXELS)[0][0][1]
        browser.execute_script("document.getElementById('clip-reset').click()")
        wait_for(lambda: cams() == [int((DECLARED["gradcam"][2][i] > 0).sum()) for i in range(2)], what="per method again")
        wait_for(lambda: browser.execute_script(
            "const c = document.getElementById('detail-overlay'); return [...c.getContext('2d').getImageData(0, 0, c.width, c.height).data];")
            == browser.execute_script(CELL_PIXELS)[0][0][1], what="the detail view per method again")
        wait_for(lambda: "lo" not in parent_ki(browser), what="no clip in the URL")
        ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    finally:
        browser.switch_to.default_content()


def test_new_epochs_appear_in_an_open_page(server, browser):  # noqa: F811
    script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": "window.__kiPoll = 300;"})["identifier"]
    try:
        open_dashboard(browser, server)
        select_runs(browser, [LIVE])
        wait_for(lambda: (s := grid_state(browser))["step"] == "1" and s["loaded"] == 1, what="the live run at its last epoch")
        _write(server.logdir, LIVE, lambda: _live_epoch(2))
        # The slider was on the last epoch: it follows the new one, and the link does not pin it.
        wait_for(lambda: (s := grid_state(browser))["step"] == "2" and s["loaded"] == 1 and browser.execute_script(
            "return document.querySelector('td.cell canvas').dataset.step") == "2", timeout=30, what="epoch 3 in the open page")
        assert browser.execute_script("return document.getElementById('epoch-label').textContent") == "3 (step 2)"
        wait_for(lambda: parent_ki(browser).get("run") == [LIVE], what="the URL")
        assert "step" not in parent_ki(browser)
        # Not on the last epoch: the slider stays where it is, and the link keeps the epoch.
        choose(browser, "epoch", 0, "input")
        wait_for(lambda: parent_ki(browser).get("step") == ["0"], what="epoch 1 in the URL")
        _write(server.logdir, LIVE, lambda: _live_epoch(3))
        wait_for(lambda: browser.execute_script("return document.getElementById('epoch').max") == "3", timeout=30, what="epoch 4 merged")
        assert grid_state(browser)["step"] == "0" and parent_ki(browser).get("step") == ["0"]
    finally:
        browser.switch_to.default_content()
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script})


def test_a_link_pasted_into_an_open_tab_applies(server, browser):  # noqa: F811
    open_dashboard(browser, server)
    try:
        wait_for(lambda: (s := grid_state(browser))["loaded"] == 12 and s["groups"] == [ALPHA], what="the default view")
        wait_for(lambda: parent_ki(browser).get("run") == [ALPHA], what="the view in the URL")
        browser.execute_script("window.__same = true")  # the frame is not reloaded: the page applies the link itself
        browser.switch_to.default_content()
        link = urllib.parse.urlencode([("run", BETA), ("step", "0"), ("pol", "negative"), ("show", "wrong"), ("hide", "gradcam")])
        browser.execute_script("location.hash = '#keras_interp&ki=' + encodeURIComponent(arguments[0])", link)  # as a pasted link does
        browser.switch_to.frame(wait_for(lambda: browser.find_elements("css selector", "iframe"), what="the frame")[0])
        wrong = [i for i, label in enumerate(LABELS) if label not in (None, 0)]  # at epoch 1 every image was predicted cat
        state = wait_for(lambda: (s := grid_state(browser))["groups"] == [BETA] and s["step"] == "0" and s["rows"] == wrong and s,
                         what="the pasted view")
        assert state["columns"] == ["input", "saliency @1"] and browser.execute_script("return window.__same") is True
        assert browser.execute_script("return [document.getElementById('polarity').value, document.getElementById('filter-correct').value]") \
            == ["negative", "wrong"]
        time.sleep(0.5)  # the old view is not written back over it
        ki = parent_ki(browser)
        assert ki["run"] == [BETA] and ki["pol"] == ["negative"] and ki["step"] == ["0"]
    finally:
        browser.switch_to.default_content()


FAIL = """
const original = window.fetch;
window.__fail = true;
window.fetch = async function (input, init) {
  const url = new URL(String((input && input.url) || input), location.href);
  const tag = url.searchParams.get('tag');
  if (url.pathname.endsWith('/image') && window.__fail && tag === 'keras_interp/map/saliency/001') return new Response('', { status: 500 });
  if (url.pathname.endsWith('/image') && tag === 'keras_interp/map/gradcam/002') return new Response('', { status: 404 });
  return original.call(this, input, init);
};
"""


def test_a_failed_request_shows_error_and_is_asked_again(server, browser):  # noqa: F811
    script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": FAIL})["identifier"]
    cell = lambda i, k: browser.execute_script(
        "const td = document.querySelector(`tr.image-row[data-index='${arguments[0]}']`).querySelectorAll('td.cell')[arguments[1]];"
        "const na = td.querySelector('.na'); return [td.dataset.state, na.style.display !== 'none' && na.textContent, na.title];", i, k)
    try:
        open_dashboard(browser, server)
        wait_for(lambda: grid_state(browser)["loaded"] == 10, what="the grid")
        assert cell(1, 1) == ["error", "error", "error: HTTP 500"]
        assert cell(2, 0) == ["missing", "n/a", "not logged at this epoch"]
        browser.execute_script("window.__fail = false")
        choose(browser, "epoch", 1, "input")
        choose(browser, "epoch", 2, "input")
        wait_for(lambda: cell(1, 1)[0] == "loaded", what="the failed map asked again")
        assert cell(2, 0)[0] == "missing"
    finally:
        browser.switch_to.default_content()
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script})


def test_every_run_shown_and_fit_to_width_by_default_until_the_slider_moves(server, browser):  # noqa: F811
    open_dashboard(browser, server, fragment="#keras_interp")  # no link: the defaults
    try:
        with urllib.request.urlopen(f"{server}/data/plugin/keras_interp/runs") as response:
            runs = sorted(json.load(response)["runs"])
        shown = lambda: browser.execute_script(  # noqa: E731
            "return [...document.querySelectorAll('#runs input[data-run]')].filter(b => b.checked).map(b => b.dataset.run)")
        wait_for(lambda: sorted(shown()) == runs and len(runs) > 1, what="every run checked")
        select_runs(browser, [ALPHA, BETA])
        wait_for(lambda: grid_state(browser)["loaded"] > 0, what="two runs")
        widths = lambda: browser.execute_script(  # noqa: E731
            "const m = document.getElementById('main'), g = document.getElementById('grid');"
            "return [m.clientWidth, g.getBoundingClientRect().width, document.getElementById('size').value,"
            " document.querySelector('td.cell .box').getBoundingClientRect().width];")
        # Fitted: each column an equal share, within the slider's range; the grid then fills the
        # page up to less than one column's slack, and the link leaves the default out.
        columns = len(grid_state(browser)["columns"])
        fitted = lambda: min(320, math.floor((widths()[0] - 34) / columns) - 9)  # noqa: E731
        # (The slider shows the fitted size to its step; the cells have it exactly.)
        main, grid, _, box = wait_for(lambda: (w := widths())[3] == fitted() and w, what="the fitted size, drawn")
        assert box == 320 or main - 2 * (box + 9) < grid <= main
        assert "size" not in parent_ki(browser)
        choose(browser, "size", 96, "input")  # the slider takes over
        wait_for(lambda: parent_ki(browser).get("size") == ["96"], what="the slider's size in the link")
        assert widths()[3] == 96
        browser.find_element("id", "size-fit").click()  # and "fit" gives the page back to the columns
        wait_for(lambda: widths()[3] == fitted() and "size" not in parent_ki(browser), what="fit again")
    finally:
        browser.switch_to.default_content()
