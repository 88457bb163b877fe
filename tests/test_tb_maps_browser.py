"""maps.js and detail.js in a real browser: the modules imported by a same-origin page of a real
`tensorboard` serving logs written with keras_interp.summary, fed the server's /image blobs.
Pixels are read back from the canvases they paint."""

import json
import os
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest
import tensorflow as tf
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from test_tb_browser import _serve, browser, wait_for  # noqa: F401 - fixtures
from test_tb_plugin import legacy_map_metadata

from keras_interp import summary

RUN, SIZE, EPOCHS = f"maps/{summary.SUBDIR}", 16, 24  # TensorBoard names a run by its directory
rng = np.random.default_rng(0)
INPUT = rng.integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)
_columns = np.arange(SIZE)[None, :].repeat(SIZE, axis=0)
# Left half negative, right half positive, magnitudes all different.
SIGNED = np.where(_columns < SIZE // 2, -(1 + rng.uniform(size=(SIZE, SIZE))), 2 * (1 + rng.uniform(size=(SIZE, SIZE))))
UNSIGNED = rng.uniform(0, 3, size=(SIZE, SIZE))
LEGACY = np.round((UNSIGNED - UNSIGNED.min()) / np.ptp(UNSIGNED) * 255).astype(np.uint8)
FILM = [rng.normal(size=(SIZE, SIZE)) for _ in range(EPOCHS)]
ZERO_MIN = UNSIGNED - UNSIGNED.min()  # non-negative, its minimum exactly 0
CONSTANT = np.full((SIZE, SIZE), 0.25)


def class_model(k, epoch):
    """A one-colour picture: red tells the class, green the epoch."""
    return np.full((8, 8, 3), (60 * k + 10, 10 * epoch + 5, 200), np.uint8)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("maps_logs"))
    writer = tf.summary.create_file_writer(os.path.join(path, *RUN.split("/")))
    with writer.as_default():
        summary.write_input(0, INPUT, 0, label=0, class_names=["cat", "dog"])
        summary.write_map("signed", 0, SIGNED, 0)
        summary.write_map("unsigned", 0, UNSIGNED, 0)
        summary.write_map("zero_min", 0, ZERO_MIN, 0)
        summary.write_map("constant", 0, CONSTANT, 0)
        tf.summary.write(summary.map_tag("legacy", 0), tf.constant([summary.encode_png(LEGACY)]), step=0,
                         metadata=legacy_map_metadata("legacy", 0))
        for epoch, values in enumerate(FILM):
            summary.write_map("film", 0, values, epoch)
            for k, label in enumerate(("cat", "dog")):
                summary.write_picture("class_model", k, class_model(k, epoch), epoch, label=label)
    writer.close()
    yield from _serve(path, "true", "", runs=1)


@pytest.fixture(scope="module")
def page(server, browser):  # noqa: F811 - the imported fixture
    browser.get(f"{server}/data/plugin/keras_interp/runs")
    return browser


def image_url(server, tag, step):
    query = urllib.parse.urlencode({"run": RUN, "tag": tag, "step": step})
    return f"{server}/data/plugin/keras_interp/image?{query}"


# Runs `body` in an async function with the modules (M: maps.js, D: detail.js) and helpers; its
# return value comes back (an exception comes back as {"error": stack} and fails the test).
PRELUDE = """
const done = arguments[arguments.length - 1];
const plugin = arguments[0] + "/data/plugin/keras_interp";
(async () => {
  const M = await import(plugin + "/maps.js");
  const D = await import(plugin + "/detail.js");
  const url = (tag, step) => plugin + "/image?" + new URLSearchParams({run: __RUN__, tag, step: String(step)});
  const blob = async (tag, step) => {
    const response = await fetch(url(tag, step));
    if (!response.ok) throw new Error(`${tag} ${step}: ${response.status}`);
    return response.blob();
  };
  const input = () => blob("keras_interp/input/000", 0).then(M.decodeInput);
  const map = (method, step = 0) => blob(`keras_interp/map/${method}/000`, step).then(M.decodeMap);
  const rgba = (canvas) => [...canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data];
  const painted = (inp, m, settings) => {
    const canvas = document.createElement("canvas");
    M.paint(canvas, inp, m, settings);
    return rgba(canvas);
  };
  __BODY__
})().then(done, (e) => done({error: String((e && e.stack) || e)}));
""".replace("__RUN__", json.dumps(RUN))


def js(page, server, body):
    result = page.execute_async_script(PRELUDE.replace("__BODY__", body), str(server))
    assert not (isinstance(result, dict) and "error" in result), result and result.get("error")
    return result


def pixels(flat):
    return np.asarray(flat, np.int64).reshape(SIZE, SIZE, 4)


def tolerance(values):
    return np.ptp(values) / 65535 * 1.01


def test_decode_map_gives_the_real_values(page, server):
    result = js(page, server, """
      const out = {};
      for (const method of ["signed", "unsigned"]) {
        const m = await map(method);
        out[method] = {width: m.width, height: m.height, values: [...m.values], lo: m.lo, hi: m.hi, exact: m.exact, signed: m.signed};
      }
      const inp = await input();
      out.input = {width: inp.width, height: inp.height, pixels: [...inp.pixels]};
      return out;
    """)
    for method, written in (("signed", SIGNED), ("unsigned", UNSIGNED)):
        got = result[method]
        assert (got["width"], got["height"], got["exact"]) == (SIZE, SIZE, True)
        assert got["signed"] is (method == "signed")
        assert got["lo"] == written.min() and got["hi"] == written.max()
        values = np.asarray(got["values"]).reshape(SIZE, SIZE)
        with urllib.request.urlopen(image_url(server, summary.map_tag(method, 0), 0)) as response:
            decoded = summary.decode_map(response.read())
        np.testing.assert_allclose(values, decoded, rtol=0, atol=tolerance(written) / 100)
        np.testing.assert_allclose(values, written, rtol=0, atol=tolerance(written))
    np.testing.assert_array_equal(pixels(result["input"]["pixels"])[..., :3], INPUT)


def test_legacy_grey_map_decodes_as_scaled_values(page, server):
    result = js(page, server, """
      const m = await map("legacy");
      const bar = M.colorBar(m, {});
      return {values: [...m.values], lo: m.lo, hi: m.hi, exact: m.exact, signed: m.signed, scale: M.scaleOf(m, {}),
              ticks: [...bar.querySelectorAll(".tick")].map((t) => t.textContent), text: bar.textContent};
    """)
    assert (result["lo"], result["hi"], result["exact"], result["signed"]) == (0, 1, False, False)
    np.testing.assert_allclose(np.asarray(result["values"]).reshape(SIZE, SIZE), LEGACY / 255, atol=1e-6)
    assert result["scale"]["polarity"] == "positive" and not result["scale"]["diverging"]
    assert result["ticks"] == ["0", "1"] and "scaled 0-1" in result["text"]


def test_polarity_both_is_diverging_and_one_polarity_leaves_the_other_half_alone(page, server):
    result = js(page, server, """
      const [inp, m] = await Promise.all([input(), map("signed")]);
      return {
        input: [...inp.pixels],
        auto: M.scaleOf(m, {}),
        both: painted(inp, m, {polarity: "both", clip: [0, 100], opacity: 1}),
        positive: painted(inp, m, {polarity: "positive"}),
        negative: painted(inp, m, {polarity: "negative"}),
      };
    """)
    assert result["auto"]["polarity"] == "both" and result["auto"]["diverging"]
    source = pixels(result["input"])
    both = pixels(result["both"])
    half = SIZE // 2
    drawn = (both != source).any(axis=-1)
    assert drawn[:, :half].sum() >= half * SIZE - 1 and drawn[:, half:].sum() >= half * SIZE - 1  # only the minimum |x| is cut
    left, right = both[:, :half][drawn[:, :half]], both[:, half:][drawn[:, half:]]
    assert (left[:, 2] > left[:, 0]).all(), "negative values are blue"
    assert (right[:, 0] > right[:, 2]).all(), "positive values are red"
    positive, negative = pixels(result["positive"]), pixels(result["negative"])
    np.testing.assert_array_equal(positive[:, :half], source[:, :half])
    np.testing.assert_array_equal(negative[:, half:], source[:, half:])
    assert (positive[:, half:] != source[:, half:]).any(axis=-1).sum() > 0.2 * half * SIZE
    assert (negative[:, :half] != source[:, :half]).any(axis=-1).sum() > 0.2 * half * SIZE


def test_clip_percentiles_set_how_much_is_drawn(page, server):
    result = js(page, server, """
      const [inp, m] = await Promise.all([input(), map("unsigned")]);
      const settings = (clip) => ({polarity: "positive", clip, opacity: 1});
      return {input: [...inp.pixels], values: [...m.values],
              all: painted(inp, m, settings([0, 100])), top: painted(inp, m, settings([90, 100])),
              cuts: M.scaleOf(m, settings([90, 99]))};
    """)
    source, values = pixels(result["input"]), np.asarray(result["values"])
    count = lambda flat: int((pixels(flat) != source).any(axis=-1).sum())
    assert count(result["all"]) == SIZE * SIZE - 1  # all but the minimum
    expected = int((values > np.percentile(values, 90)).sum())
    assert abs(count(result["top"]) - expected) <= 1 and 0.08 < count(result["top"]) / SIZE ** 2 < 0.12
    np.testing.assert_allclose([result["cuts"]["low"], result["cuts"]["high"]], np.percentile(values, [90, 99]), rtol=1e-6)


def test_outline_draws_only_the_boundary_of_the_region(page, server):
    result = js(page, server, """
      const [inp, m] = await Promise.all([input(), map("signed")]);
      return {input: [...inp.pixels], outline: painted(inp, m, {polarity: "positive", clip: [0, 100], mode: "outline"})};
    """)
    source, outline = pixels(result["input"]), pixels(result["outline"])
    changed = (outline != source).any(axis=-1)
    expected = np.zeros((SIZE, SIZE), bool)
    expected[:, SIZE // 2] = True  # the positive half's edge inside the picture
    np.testing.assert_array_equal(changed, expected)
    assert len({tuple(p) for p in outline[changed]}) == 1, "one solid colour"


def test_a_map_of_another_size_is_stretched_bilinearly_on_its_values(page, server):
    result = js(page, server, """
      const inp = {width: 4, height: 3, pixels: new Uint8ClampedArray(4 * 3 * 4).map((_, i) => (i % 4 === 3 ? 255 : 0))};
      const row = {width: 2, height: 1, values: new Float32Array([0, 1]), lo: 0, hi: 1, exact: true, signed: false};
      const canvas = document.createElement("canvas");
      M.paint(canvas, inp, row, {polarity: "positive", clip: [0, 100], colormap: "grey", opacity: 1});
      return {size: [canvas.width, canvas.height], pixels: rgba(canvas)};
    """)
    assert result["size"] == [4, 3]
    red = np.asarray(result["pixels"]).reshape(3, 4, 4)[..., 0]
    # Half-pixel centres: 0, 0.25, 0.75, 1 (0 is not drawn: the black input shows).
    np.testing.assert_array_equal(red, [[0, 64, 191, 255]] * 3)


def test_colorbar_ticks_and_value_under_a_point(page, server):
    result = js(page, server, """
      const [signed, unsigned] = await Promise.all([map("signed"), map("unsigned")]);
      const ticks = (m) => [...M.colorBar(m, {}).querySelectorAll(".colorbar .tick")].map((t) => t.textContent);
      const points = [];
      for (let y = 0; y < 16; y += 5) for (let x = 0; x < 16; x += 3) points.push([y, x, M.valueAt(signed, (x + 0.5) / 16, (y + 0.5) / 16)]);
      // A zero tick that would run into the minimum's label is left out (the ends always stay).
      const crowded = {width: 2, height: 1, values: new Float32Array([-20.34, 2000]), lo: -20.34, hi: 2000, exact: true, signed: true};
      const spans = [...M.colorBar(crowded, {}).querySelectorAll(".colorbar .tick")];
      return {signed: ticks(signed), unsigned: ticks(unsigned), points, isBar: M.colorBar(signed, {}).classList.contains("colorbar"),
              crowded: spans.map((t) => t.textContent)};
    """)
    assert result["isBar"]
    three = lambda x: float(f"{x:.3g}")
    assert [float(t) for t in result["signed"]] == [three(SIGNED.min()), 0.0, three(SIGNED.max())]
    assert [float(t) for t in result["unsigned"]] == [three(UNSIGNED.min()), three(UNSIGNED.max())]
    assert result["crowded"] == ["-20.3", "2000"]
    for y, x, value in result["points"]:
        assert abs(value - SIGNED[y, x]) <= tolerance(SIGNED)


DETAIL_STATE = """
  const view = document.getElementById("detail");
  if (!view) return null;
  const img = [...view.querySelectorAll("img.detail-picture")];
  const probe = document.createElement("canvas").getContext("2d", {willReadFrequently: true});
  return {
    step: view.dataset.step, state: view.dataset.state, requests: window.__requests.length,
    frames: [...view.querySelectorAll(".frame")].map((f) => [Number(f.dataset.step), f.dataset.state]),
    frameLabels: [...view.querySelectorAll(".frame")].map((f) => [f.title, f.lastElementChild.textContent]),
    label: view.querySelector("#detail-step").textContent,
    pictureTitles: [...view.querySelectorAll(".detail-picture-title")].map((t) => t.textContent),
    overlay: rgba(view.querySelector("#detail-overlay")),
    ticks: [...view.querySelectorAll("#detail-colorbar .tick")].map((t) => t.textContent),
    value: view.querySelector("#detail-value").dataset.value ?? null,
    dialog: view.getAttribute("role"), caption: view.querySelector("#detail-caption").textContent,
    pictures: img.map((i) => {
      if (!(i.complete && i.naturalWidth)) return null;
      probe.drawImage(i, 0, 0, 1, 1);
      return [i.alt, ...probe.getImageData(0, 0, 1, 1).data.slice(0, 3)];
    }),
  };
"""


def test_detail_view_filmstrip_selects_epochs_and_closes_on_escape(page, server):
    js(page, server, """
      window.__requests = [];
      window.__closed = false;
      const inp = input();
      window.__detail = D.openDetail({
        title: "image 0 / film", caption: "a <b>caption</b>", runColor: "#ff7043",
        steps: [...Array(__EPOCHS__).keys()], step: 0, settings: {polarity: "both"},
        loadInput: () => inp,
        loadMap: (step) => { window.__requests.push(step); return map("film", step); },
        pictures: (step) => [{title: "class models", items: ["cat", "dog"].map((label, k) =>
          ({label, url: url(`keras_interp/class_model/00${k}`, step)}))}],
        onClose: () => { window.__closed = true; },
      });
      window.__settings = {polarity: "both"};
      window.__paintFilm = async (step) => painted(await inp, await map("film", step), window.__settings);
      return true;
    """.replace("__EPOCHS__", str(EPOCHS)))
    state = lambda: js(page, server, DETAIL_STATE)
    first = wait_for(lambda: (s := state()) and s["state"] == "loaded" and all(p for p in s["pictures"]) and s,
                     timeout=20, what="the detail view at epoch 0")
    assert first["dialog"] == "dialog" and first["caption"] == "a <b>caption</b>"
    assert [f[0] for f in first["frames"]] == list(range(EPOCHS))
    # Epochs are labelled step + 1, as in the grid; data-step keeps the logged step.
    assert first["frameLabels"] == [[f"epoch {k + 1}", str(k + 1)] for k in range(EPOCHS)]
    assert first["label"] == "epoch 1" and first["pictureTitles"] == ["class models (epoch 1)"]
    # Only the frames in the strip's view load: the last ones wait to be scrolled to.
    loaded = wait_for(lambda: (s := state()) and [f for f in s["frames"] if f[1] == "loaded"], timeout=20, what="frames")
    assert 0 in [f[0] for f in loaded]
    after = state()
    assert after["frames"][-1][1] == "idle" and after["requests"] < EPOCHS
    page.execute_script("const s = document.getElementById('detail-filmstrip'); s.scrollLeft = s.scrollWidth;")
    wait_for(lambda: state()["frames"][-1][1] == "loaded", timeout=20, what="the last frame to load when scrolled to")

    def shows(step):
        s = state()
        expected = js(page, server, f"return await window.__paintFilm({step});")
        pictures = [p[:3] for p in s["pictures"] if p]
        return (s["step"] == str(step) and s["state"] == "loaded" and s["overlay"] == expected
                and pictures == [["cat", 10, 10 * step + 5], ["dog", 70, 10 * step + 5]] and s)

    page.find_element(By.CSS_SELECTOR, '#detail .frame[data-step="17"]').click()
    s = wait_for(lambda: shows(17), timeout=20, what="epoch 17 in the big view and its class models")
    assert s["label"] == "epoch 18" and s["pictureTitles"] == ["class models (epoch 18)"]
    three = lambda x: float(f"{x:.3g}")
    assert [float(t) for t in s["ticks"]] == [three(FILM[17].min()), 0.0, three(FILM[17].max())]
    overlay = page.find_element(By.ID, "detail-overlay")
    assert overlay.size["width"] == 320
    ActionChains(page).move_to_element_with_offset(overlay, 10, 10).perform()  # from the centre: map pixel (8, 8)
    value = wait_for(lambda: state()["value"], timeout=5, what="the value under the cursor")
    assert abs(float(value) - FILM[17][8, 8]) <= tolerance(FILM[17])
    page.find_element(By.CSS_SELECTOR, '#detail .frame[data-step="3"]').click()
    wait_for(lambda: shows(3), timeout=20, what="epoch 3 in the big view and its class models")
    ActionChains(page).send_keys(Keys.ESCAPE).perform()
    wait_for(lambda: page.execute_script("return !document.getElementById('detail') && window.__closed"),
             timeout=5, what="Escape to close the detail view")


def drawn_of(flat, source):
    """The painted pixels (RGB) of a picture and the mask of where they differ from the input."""
    picture = pixels(flat)
    mask = (picture != source).any(axis=-1)
    return picture[..., :3][mask].astype(int), mask


def test_auto_polarity_follows_the_columns_declaration(page, server):
    result = js(page, server, """
      const [inp, zero, signed] = await Promise.all([input(), map("zero_min"), map("signed")]);
      const scale = (m, declared) => { const s = M.scaleOf(m, {signed: declared}); return [s.polarity, s.diverging]; };
      return {
        input: [...inp.pixels],
        declared: scale(zero, true), unknown: scale(zero, null), unsigned: scale(zero, false), absent: scale(zero, undefined),
        negativesAnyway: scale(signed, false), signedUnknown: scale(signed, null),
        painted: painted(inp, zero, {signed: true, clip: [0, 100], opacity: 1}),
        jet: painted(inp, zero, {signed: false, clip: [0, 100], opacity: 1}),
        bar: M.colorBar(zero, {signed: true}).dataset.diverging,
      };
    """)
    # A signed column draws a map whose minimum is exactly 0 diverging, like its other maps.
    assert result["declared"] == ["both", True] and result["bar"] == "true"
    # Unknown: per map, as before; declared unsigned: one polarity, except a map with negative values.
    assert result["unknown"] == result["absent"] == result["unsigned"] == ["positive", False]
    assert result["negativesAnyway"] == result["signedUnknown"] == ["both", True]
    source = pixels(result["input"])
    red, mask = drawn_of(result["painted"], source)
    assert mask.sum() == (ZERO_MIN > 0).sum()
    assert (red[:, 0] - red[:, 2] >= 100).all() and (red[:, 0] > red[:, 1]).all(), "all red: the positive half"
    jet, _ = drawn_of(result["jet"], source)
    assert (jet[:, 2] > jet[:, 0]).any(), "the sequential jet has blue low values"


def test_negative_polarity_is_blue_and_the_diverging_ramps_start_saturated(page, server):
    result = js(page, server, """
      const [inp, m] = await Promise.all([input(), map("signed")]);
      const out = {input: [...inp.pixels], both: painted(inp, m, {polarity: "both", clip: [0, 100], opacity: 1})};
      for (const colormap of M.SEQUENTIAL) out[colormap] = painted(inp, m, {polarity: "negative", colormap, clip: [0, 100], opacity: 1});
      return out;
    """)
    source, half = pixels(result["input"]), SIZE // 2
    for colormap in ("jet", "inferno", "viridis", "grey"):
        blue, mask = drawn_of(result[colormap], source)
        assert not mask[:, half:].any() and mask[:, :half].sum() >= half * SIZE - 1
        # RdBu's blue half, whatever the colormap: from [146, 197, 222] at the low cut to [33, 102, 172].
        assert (blue[:, 2] - blue[:, 0] >= 70).all(), colormap
    both = pixels(result["both"])[..., :3].astype(int)
    cut = lambda side: both[:, side][(both[:, side] != source[:, side, :3]).any(axis=-1)]
    left, right = cut(slice(0, half)), cut(slice(half, SIZE))
    # No grey wash at the low cut: even the weakest drawn values are clearly red or blue.
    assert (right[:, 0] - right[:, 2] >= 100).all() and (left[:, 2] - left[:, 0] >= 70).all()
    palest = left[np.argmax(left.sum(axis=1))]  # the weakest negative value, just above the low cut
    assert np.abs(palest - [146, 197, 222]).max() <= 6


def test_a_constant_map_draws_nothing_and_says_so(page, server):
    result = js(page, server, """
      const [inp, m] = await Promise.all([input(), map("constant")]);
      const bar = M.colorBar(m, {});
      return {input: [...inp.pixels], painted: painted(inp, m, {clip: [0, 100]}), lo: m.lo, hi: m.hi,
              notes: [...bar.querySelectorAll(".colorbar-note")].map((n) => n.textContent)};
    """)
    assert result["lo"] == result["hi"] == 0.25
    np.testing.assert_array_equal(pixels(result["painted"]), pixels(result["input"]))
    assert result["notes"] == ["constant map (0.25)"]


def test_detail_caption_follows_the_epoch_and_failed_frames_say_error(page, server):
    js(page, server, """
      window.__captions = [];
      const inp = input();
      window.__detail = D.openDetail({
        title: "image 0 / film", steps: [0, 1, 2, 3], step: 0,
        // epoch 2's caption answers late: it must not overwrite the epoch selected after it.
        caption: (step) => { window.__captions.push(step);
          return new Promise((done) => setTimeout(() => done(`<i>caption</i> ${step + 1}`), step === 1 ? 400 : 10)); },
        loadInput: () => inp,
        loadMap: (step) => (step === 2 ? null : step === 3 ? Promise.reject(new Error("HTTP 500")) : map("film", step)),
      });
      return true;
    """)
    state = lambda: page.execute_script("""
      const d = document.getElementById('detail');
      return d && {step: d.dataset.step, state: d.dataset.state, caption: document.getElementById('detail-caption').textContent,
        frames: [...d.querySelectorAll('.frame')].map((f) => [f.dataset.state, f.querySelector('div').textContent, f.querySelector('div').title])};
    """)
    wait_for(lambda: (s := state()) and s["caption"] == "<i>caption</i> 1" and s["state"] == "loaded", timeout=10, what="epoch 1's caption")
    frames = wait_for(lambda: (s := state()) and all(f[0] not in ("idle", "loading") for f in s["frames"]) and s["frames"],
                      timeout=10, what="the frames")
    assert [f[0] for f in frames] == ["loaded", "loaded", "missing", "error"]
    assert frames[2][1:] == ["n/a", "not logged at this epoch"] and frames[3][1:] == ["error", "error: HTTP 500"]
    page.execute_script("window.__detail.select(1); setTimeout(() => window.__detail.select(2), 50);")
    s = wait_for(lambda: (s := state()) and s["caption"] == "<i>caption</i> 3" and s, timeout=10, what="epoch 3's caption")
    assert s["state"] == "missing"
    time.sleep(0.6)  # epoch 2's late answer comes, and is dropped
    assert state()["caption"] == "<i>caption</i> 3"
    page.execute_script("window.__detail.select(3)")
    # The failed epoch still gets its caption (answered 10 ms later than its frame's state).
    wait_for(lambda: (s := state()) and s["step"] == "3" and s["state"] == "error" and s["caption"] == "<i>caption</i> 4",
             timeout=10, what="the failed epoch with its caption")
    page.execute_script("window.__detail.close()")
