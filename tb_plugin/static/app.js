// Explanations dashboard for keras_interp: the page, started by index.js (the module TensorBoard
// loads) with the /runs answers it asked for. ES modules in an iframe: no inline scripts, no
// external assets, every URL relative to its module (so --path_prefix works), and names from the
// logs only ever set as textContent.
//
// start() wires the modules together; none of them imports this one:
//   util.js      small helpers: elements, requests, tags
//   theme.js     the stylesheet, dark mode following TensorBoard's, run colours
//   state.js     the view state and its encoding in TensorBoard's URL hash
//   data.js      image URLs, bounded caches of decoded inputs and maps, predictions, quality, true labels
//   controls.js  the left pane and the toolbar
//   grid.js      the virtual grid, its cells and their drawing model, the value under the cursor
//   order.js     the rows' filters and sort (by confidence or by a quality measure)
//   strips.js    the picture strips (class models, ...)
//   charts.js    the scalars card
//   download.js  the PNG of the grid as shown
//   maps.js      one map: decoding, painting, colour bar; detail.js: the detail view of one cell
// What a control changes (update, rebuild, repaint) is decided here, and how the page follows the
// training (/runs polled) and links pasted into its tab (TensorBoard's hash).

import { openDetail } from "./detail.js";
import { createCharts } from "./charts.js";
import { createControls } from "./controls.js";
import { createStore } from "./data.js";
import { downloadPNG } from "./download.js";
import { createGrid } from "./grid.js";
import { createOrder } from "./order.js";
import { DEFAULT_SETTINGS } from "./maps.js";
import { columnSettings, hostWindow, linkedElsewhere, methodClip, readState, urlParams, urlSaver } from "./state.js";
import { createStrips } from "./strips.js";
import { PAD, TOOLBAR, injectStyle, runColours } from "./theme.js";
import { el, epochAndStep, epochText, getJSON, isNumber, oncePerFrame, pictureTag, whileShown } from "./util.js";

// TensorBoard's own reload period; a test may shorten it (window.__kiPoll, in ms, read once).
const POLL_MS = 30_000;

// The derived sets of a run's /runs entry.
function prepare(info) {
  info.imageSet = new Set(info.images);
  info.methodSteps = Object.fromEntries(info.methods.map((m) => [m, new Set((info.method_steps || {})[m] || info.steps)]));
  return info;
}

// `answers`: a promise of [this plugin's /runs, TensorBoard's own run list (its colour order)].
export async function start(answers) {
  injectStyle();
  const [{ runs }, order] = await answers;
  const names = Object.keys(runs).sort();
  if (!names.length) {
    document.body.appendChild(el("p", { text: "No explanations logged yet: add keras_interp.ExplanationLogger to model.fit.",
      style: { margin: "16px" } }));
    return;
  }
  for (const name of names) prepare(runs[name]);
  const colours = runColours(order, names);
  const { colorOf } = colours;
  const label = (run, method) => (runs[run].labels && runs[run].labels[method]) || method;
  const state = readState(runs, names);

  // ---- the page: controls, scalars, picture strips, grid ----
  const controls = createControls(names, state);
  const { runBoxes, sizeSlider, polarity, clipLow, clipHigh, colormap, opacity, mode, filterTrue, filterPred, filterShow,
    sortSelect, slider, sliderB, epochLabel, epochLabelB, compare, download } = controls;
  const store = createStore(runs);
  const grid = createGrid({ runs, state, store, label, slider, sliderB, hoverBar: controls.hoverBar });
  const { view, stepA, stepB } = grid;
  const strips = createStrips({ runs, state, store, stepA, stepB });
  const charts = createCharts({ state, refreshColours: colours.refresh, onToggle: () => saveURL() });
  const { applyOrder } = createOrder({ runs, state, store, grid, controls });
  const main = el("main", { id: "main" }, [controls.toolbar, charts.card, strips.element, grid.card]);
  document.body.append(el("div", { id: "app" }, [controls.sidebar, main]), grid.valueTip);
  colours.followTheme();

  const saveURL = urlSaver(() => {
    const at = grid.firstRowInView();
    return urlParams(state, at !== null && at !== view.order[0] ? at : null, view.steps.length ? view.steps[view.steps.length - 1] : null);
  });
  let detail = null, detailColumn = null;  // the open detail view and its cell's column {run, method}
  const detailSettings = () => grid.settingsOf(detailColumn);
  // The clip the handles show while each method uses its own: the first column's.
  const shownClip = () => {
    const column = view.groups.flatMap((g) => g.columns)[0];
    return column ? methodClip(runs, column.run, column.method) : [...DEFAULT_SETTINGS.clip];
  };
  // The shown columns polarity draws on the diverging scale (signed maps under "auto", or all
  // under "both"): the colormap control says it does not colour them.
  const showColormapUse = () => {
    const columns = view.groups.flatMap((g) => g.columns);
    const diverging = columns.filter((c) => {
      const s = columnSettings(runs, state, c.run, c.method);
      return s.polarity === "both" || (s.polarity === "auto" && s.signed === true);
    });
    controls.showColormapUse([...new Set(diverging.map((c) => label(c.run, c.method)))],
      columns.length > 0 && diverging.length === columns.length);
  };
  const showSettings = () => { controls.showSettings(shownClip()); showColormapUse(); };

  // ---- building the columns (runs, methods, compare) ----
  function build() {
    grid.build();
    controls.listMethods(runs, label, rebuild);
    controls.listSorts(runs, label);
    strips.build();
    charts.build();
    colours.refresh();
    slider.max = sliderB.max = Math.max(0, view.steps.length - 1);
    showSettings();  // the handles follow the first column while the clip is per method
    fitSize();
  }

  // The slider positions of the chosen steps (the nearest when a run set lacks one).
  function placeSliders() {
    const near = (step, fallback) => {
      if (!isNumber(step) || !view.steps.length) return fallback;
      let best = 0;
      view.steps.forEach((s, k) => { if (Math.abs(s - step) < Math.abs(view.steps[best] - step)) best = k; });
      return best;
    };
    const last = Math.max(0, view.steps.length - 1);
    slider.value = String(near(state.step, last));
    sliderB.value = String(near(state.stepB, Number(slider.value)));
  }

  // ---- update: every cell and strip points at the chosen epochs ----
  function update() {
    ++view.generation;
    state.step = stepA();
    state.stepB = stepB();
    sliderB.disabled = !state.compare;
    sliderB.style.display = epochLabelB.style.display = state.compare ? "" : "none";
    const a = stepA(), b = stepB();
    epochLabel.textContent = epochAndStep(a);
    epochLabelB.textContent = state.compare ? epochAndStep(b) : "";
    for (const group of view.groups) {
      for (const c of group.columns) c.th.textContent = `${label(group.run, c.method)} @${epochText(c.which === "a" ? a : b)}`;
    }
    for (const row of view.rows.values()) for (const cell of row.cells) grid.want(cell, row.index);
    grid.table.dataset.step = isNumber(a) ? String(a) : "none";  // set once the cells want the new step, so tests can wait on it
    strips.update();
    // Captions: each row's from its block of /predictions (one request per run and block in view).
    for (const row of view.rows.values()) {
      for (const group of row.groups) if (runs[group.run].imageSet.has(row.index)) grid.showCaption(group, group.run, row.index, row);
    }
    applyOrder();
    if (detail && detail.setSettings) detail.setSettings(detailSettings());
    saveURL();
  }

  function rebuild() {
    build();
    placeSliders();
    update();
  }

  // Recolour the decoded maps in the DOM (settings changes): no request.
  const schedulePaint = oncePerFrame(() => {
    grid.repaint();
    if (detail && detail.setSettings) detail.setSettings(detailSettings());
    saveURL();
  });

  // ---- click: the detail view ----
  grid.tbody.addEventListener("click", (event) => {
    const td = event.target.closest && event.target.closest("td.cell");
    const cell = td && grid.cellOf.get(td);
    if (!cell || !cell.want.run || !isNumber(cell.want.step)) return;  // no epoch logged: nothing to open
    const { run, method, index, step } = cell.want;
    const info = runs[run];
    if (detail) detail.close();
    detailColumn = { run, method };
    detail = openDetail({
      title: `${run} · ${label(run, method)} · image ${index}`,
      // The selected epoch's predictions (one cached /predictions answer per run and step).
      caption: (s) => store.predictionsAt(run, s, index).promise.then(() => {
        const caption = grid.captionOf(run, index, s);
        return caption ? caption.text : "";
      }),
      runColor: colorOf(run),
      steps: [...info.methodSteps[method]].sort((x, y) => x - y),
      step,
      settings: detailSettings(),
      loadInput: () => store.inputFor(run, index).promise.then((entry) => entry.value),
      loadMap: (s) => store.mapFor(run, method, index, s),
      pictures: (s) => Object.keys(info.pictures || {}).sort()
        .filter((kind) => info.pictures[kind].steps.includes(s))
        .map((kind) => ({
          title: info.pictures[kind].title,
          items: info.pictures[kind].indices.map((k) => ({
            label: (info.pictures[kind].labels || {})[String(k)] ?? String(k),
            url: store.imageURL(run, pictureTag(kind, k), s),
          })),
        })),
      onClose: () => { detail = null; detailColumn = null; },
    });
  });

  // ---- events ----
  for (const { box } of runBoxes) {
    box.onchange = () => {
      const chosen = runBoxes.filter((r) => r.box.checked).map((r) => r.name);
      if (!chosen.length) { box.checked = true; return; }  // at least one run
      state.runs = chosen;
      rebuild();
    };
  }
  slider.oninput = () => update();
  sliderB.oninput = () => update();
  compare.onchange = () => {
    state.compare = compare.checked;
    if (state.compare && !isNumber(state.stepB)) state.stepB = state.step;
    build();
    placeSliders();
    update();
  };
  const setting = (fn) => () => { fn(); showSettings(); schedulePaint(); };
  polarity.onchange = setting(() => { state.settings.polarity = polarity.value; });
  colormap.onchange = setting(() => { state.settings.colormap = colormap.value; });
  mode.onchange = setting(() => { state.settings.mode = mode.value; });
  opacity.oninput = setting(() => { state.settings.opacity = Number(opacity.value); });
  // Moving a handle sets one clip for all columns (from the values shown); reset: per method again.
  clipLow.oninput = setting(() => {
    const v = Number(clipLow.value), clip = state.settings.clip || shownClip();
    state.settings.clip = [v, Math.max(v, clip[1])];
  });
  clipHigh.oninput = setting(() => {
    const v = Number(clipHigh.value), clip = state.settings.clip || shownClip();
    state.settings.clip = [Math.min(v, clip[0]), v];
  });
  controls.clipReset.onclick = setting(() => { state.settings.clip = null; });
  function applySize(size) {
    // Keep the first row in view where the page was scrolled into the rows; above them (the
    // scalars and pictures in view) the page stays where it is.
    const at = grid.table.getBoundingClientRect().top < TOOLBAR ? grid.firstRowInView() : null;
    state.size = size;
    showSettings();
    view.rowHeight = grid.rowHeightEstimate();
    grid.renderRows();
    if (at !== null) grid.scrollToImage(at);
    grid.scheduleRows();
    saveURL();
  }
  controls.sizeFit.onclick = () => {
    state.sizeAuto = true;
    fitSize();
  };
  sizeSlider.oninput = () => {
    state.sizeAuto = false;  // the slider overrides the fit from now on (and the link keeps it)
    applySize(Number(sizeSlider.value));
  };
  // With "fit to width" (until the slider is moved), the cells share the page's width: each
  // column (an input column per run, then its maps) gets an equal part, within the slider's range.
  function fitSize() {
    if (!state.sizeAuto) return;
    const columns = view.groups.reduce((n, g) => n + 1 + g.columns.length, 0);
    const width = main.clientWidth - 2 * 16 - 2;  // the main area's padding, the card's border
    if (!columns || width <= 0) return;
    const size = Math.max(64, Math.min(320, Math.floor(width / columns) - 2 * PAD - 1));
    if (size !== state.size) applySize(size);
    else showSettings();
  }
  const refilter = () => {
    state.filters = { true: filterTrue.value, pred: filterPred.value, show: filterShow.value };
    state.sort = sortSelect.value;
    window.scrollTo(window.scrollX, 0);
    applyOrder();
    saveURL();
  };
  filterTrue.onchange = filterPred.onchange = filterShow.onchange = sortSelect.onchange = refilter;
  download.onclick = () => {
    downloadPNG({ view, state, stepA, stepB, colorOf })
      .then((drawn) => { download.dataset.settings = drawn.settings; })  // what the picture says it was drawn with
      .catch((error) => console.error(error));
  };
  window.addEventListener("scroll", () => { grid.scheduleRows(); saveURL(); }, { passive: true });
  // Back on this tab, TensorBoard writes a bare `#keras_interp`: put the view back into it. A link
  // pasted into this tab changes only the hash (the frame is not reloaded): its view is applied.
  const host = hostWindow();
  const onHash = () => {
    if (!linkedElsewhere()) { saveURL(); return; }
    applyLink();
  };
  whileShown(() => {
    host.addEventListener("hashchange", onHash);
    return () => host.removeEventListener("hashchange", onHash);
  });

  function applyLink() {
    if (detail) detail.close();
    Object.assign(state, readState(runs, names));
    charts.show();
    window.scrollTo(window.scrollX, 0);  // the link's `at`, if any, scrolls once the rows are ordered
    rebuild();
  }

  // ---- following the training: /runs again every POLL_MS, new epochs merged in ----
  const pollMs = Number(window.__kiPoll) > 0 ? Number(window.__kiPoll) : POLL_MS;
  const FIELDS = ["images", "methods", "labels", "steps", "method_steps", "class_names", "labeled", "image_labels", "pictures",
    "quality", "signed", "clip", "version"];
  const fingerprint = (info) => JSON.stringify(FIELDS.map((k) => info[k] ?? null));
  async function poll() {
    if (document.hidden) return;
    const answer = (await getJSON("./runs")).runs || {};
    const atLast = Number(slider.value) >= view.steps.length - 1;
    let changed = false, columns = false;
    for (const name of names) {  // runs that appear later need a reload (their checkboxes are built once)
      const info = runs[name], next = answer[name];
      if (!next || fingerprint(info) === fingerprint(next)) continue;
      changed = true;
      if (next.version !== info.version) store.forget(name);  // written again: another run under the same name
      if (state.runs.includes(name) && (next.version !== info.version
        || ["images", "methods", "labels", "pictures", "quality"].some((k) => JSON.stringify(info[k]) !== JSON.stringify(next[k])))) columns = true;
      for (const k of FIELDS) info[k] = next[k];
      prepare(info);
    }
    if (!changed) return;
    if (atLast) state.step = null;  // the slider was on the last epoch: it follows the new last one
    if (columns) {
      const at = grid.firstRowInView();
      if (at !== null && at !== view.order[0]) state.at = at;
      build();
    } else {
      grid.refreshSteps();
      slider.max = sliderB.max = Math.max(0, view.steps.length - 1);
    }
    placeSliders();
    update();
  }
  (function schedule() {
    setTimeout(() => poll().catch((error) => console.error(error)).finally(schedule), pollMs);
  })();
  window.addEventListener("resize", () => { fitSize(); grid.scheduleRows(); });
  // The main area also narrows when its scrollbar appears (the rows rendered): fit again then.
  let mainWidth = main.clientWidth;
  if (typeof ResizeObserver === "function") {
    new ResizeObserver(() => {
      if (main.clientWidth === mainWidth) return;  // heights change with every render: only widths refit
      mainWidth = main.clientWidth;
      fitSize();
    }).observe(main);
  }

  // Left/right move the epoch, except where the key edits a control (text, number, select, slider).
  document.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
    if (event.altKey || event.ctrlKey || event.metaKey || document.getElementById("detail")) return;
    const t = event.target;
    if (t && (t.isContentEditable || t.tagName === "SELECT" || t.tagName === "TEXTAREA"
      || (t.tagName === "INPUT" && !["checkbox", "radio", "button"].includes(t.type)))) return;
    const next = Number(slider.value) + (event.key === "ArrowLeft" ? -1 : 1);
    if (next < 0 || next > Number(slider.max)) return;
    event.preventDefault();
    slider.value = String(next);
    update();
  });

  showSettings();
  build();
  placeSliders();
  update();
}
