// Explanations dashboard for keras_interp: the module TensorBoard loads (render()). An ES module in
// an iframe: no inline scripts, no external assets, every URL relative to its module (so
// --path_prefix works), and names from the logs only ever set as textContent.
//
// render() wires the modules together; none of them imports this one:
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
// What a control changes (update, rebuild, repaint) is decided here.

import { openDetail } from "./detail.js";
import { createCharts } from "./charts.js";
import { createControls } from "./controls.js";
import { createStore } from "./data.js";
import { downloadPNG } from "./download.js";
import { createGrid } from "./grid.js";
import { createOrder } from "./order.js";
import { hostWindow, readState, urlParams, urlSaver } from "./state.js";
import { createStrips } from "./strips.js";
import { injectStyle, runColours } from "./theme.js";
import { el, epochText, getJSON, isNumber, oncePerFrame, pictureTag, whileShown } from "./util.js";

export async function render() {
  injectStyle();
  const [{ runs }, order] = await Promise.all([
    getJSON("./runs"),
    getJSON("../../runs").catch(() => []),  // TensorBoard's own run list: its colour order
  ]);
  const names = Object.keys(runs).sort();
  if (!names.length) {
    document.body.appendChild(el("p", { text: "No explanations logged yet: add keras_interp.ExplanationLogger to model.fit.",
      style: { margin: "16px" } }));
    return;
  }
  for (const name of names) {
    const info = runs[name];
    info.imageSet = new Set(info.images);
    info.methodSteps = Object.fromEntries(info.methods.map((m) => [m, new Set((info.method_steps || {})[m] || info.steps)]));
  }
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
  const charts = createCharts({ state, refreshColours: colours.refresh });
  const { applyOrder } = createOrder({ runs, state, store, grid, controls });
  const main = el("main", { id: "main" }, [controls.toolbar, charts.card, strips.element, grid.card]);
  document.body.append(el("div", { id: "app" }, [controls.sidebar, main]), grid.valueTip);
  colours.followTheme();

  const saveURL = urlSaver(() => {
    const at = grid.firstRowInView();
    return urlParams(state, at !== null && at !== view.order[0] ? at : null);
  });
  let detail = null;

  // ---- building the columns (runs, methods, compare) ----
  function build() {
    grid.build();
    controls.listMethods(runs, label, rebuild);
    controls.listSorts(runs, label);
    strips.build();
    charts.build();
    colours.refresh();
    slider.max = sliderB.max = Math.max(0, view.steps.length - 1);
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
    const g = ++view.generation;
    state.step = stepA();
    state.stepB = stepB();
    sliderB.disabled = !state.compare;
    sliderB.style.display = epochLabelB.style.display = state.compare ? "" : "none";
    const a = stepA(), b = stepB();
    epochLabel.textContent = epochText(a);
    epochLabelB.textContent = state.compare ? epochText(b) : "";
    for (const group of view.groups) {
      for (const c of group.columns) c.th.textContent = `${label(group.run, c.method)} @${epochText(c.which === "a" ? a : b)}`;
    }
    for (const row of view.rows.values()) for (const cell of row.cells) grid.want(cell, row.index);
    grid.table.dataset.step = isNumber(a) ? String(a) : "none";  // set once the cells want the new step, so tests can wait on it
    strips.update();
    for (const run of state.runs) {
      const entry = store.predictionsFor(run, a);
      const refresh = () => {
        for (const row of view.rows.values()) for (const group of row.groups) if (group.run === run && runs[run].imageSet.has(row.index)) grid.showCaption(group, run, row.index);
      };
      if (entry.value) refresh();
      else entry.promise.then(() => { if (g === view.generation) refresh(); });
    }
    applyOrder();
    if (detail && detail.setSettings) detail.setSettings(state.settings);
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
    if (detail && detail.setSettings) detail.setSettings(state.settings);
    saveURL();
  });

  // ---- click: the detail view ----
  grid.tbody.addEventListener("click", (event) => {
    const td = event.target.closest && event.target.closest("td.cell");
    const cell = td && grid.cellOf.get(td);
    if (!cell || !cell.want.run || !isNumber(cell.want.step)) return;  // no epoch logged: nothing to open
    const { run, method, index, step } = cell.want;
    const info = runs[run];
    const caption = grid.captionOf(run, index);
    if (detail) detail.close();
    detail = openDetail({
      title: `${run} · ${label(run, method)} · image ${index}`,
      caption: caption ? caption.text : "",
      runColor: colorOf(run),
      steps: [...info.methodSteps[method]].sort((x, y) => x - y),
      step,
      settings: { ...state.settings },
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
      onClose: () => { detail = null; },
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
  const setting = (fn) => () => { fn(); controls.showSettings(); schedulePaint(); };
  polarity.onchange = setting(() => { state.settings.polarity = polarity.value; });
  colormap.onchange = setting(() => { state.settings.colormap = colormap.value; });
  mode.onchange = setting(() => { state.settings.mode = mode.value; });
  opacity.oninput = setting(() => { state.settings.opacity = Number(opacity.value); });
  clipLow.oninput = setting(() => {
    const v = Number(clipLow.value);
    state.settings.clip = [v, Math.max(v, state.settings.clip[1])];
  });
  clipHigh.oninput = setting(() => {
    const v = Number(clipHigh.value);
    state.settings.clip = [Math.min(v, state.settings.clip[0]), v];
  });
  sizeSlider.oninput = () => {
    const at = grid.firstRowInView();
    state.size = Number(sizeSlider.value);
    controls.showSettings();
    view.rowHeight = grid.rowHeightEstimate();
    grid.renderRows();
    if (at !== null) grid.scrollToImage(at);
    grid.scheduleRows();
    saveURL();
  };
  const refilter = () => {
    state.filters = { true: filterTrue.value, pred: filterPred.value, show: filterShow.value };
    state.sort = sortSelect.value;
    window.scrollTo(window.scrollX, 0);
    applyOrder();
    saveURL();
  };
  filterTrue.onchange = filterPred.onchange = filterShow.onchange = sortSelect.onchange = refilter;
  download.onclick = () => { downloadPNG({ view, state, stepA, stepB, colorOf }).catch((error) => console.error(error)); };
  window.addEventListener("scroll", () => { grid.scheduleRows(); saveURL(); }, { passive: true });
  // Back on this tab, TensorBoard writes a bare `#keras_interp`: put the view back into it.
  const host = hostWindow();
  whileShown(() => {
    host.addEventListener("hashchange", saveURL);
    return () => host.removeEventListener("hashchange", saveURL);
  });
  window.addEventListener("resize", grid.scheduleRows);

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

  controls.showSettings();
  build();
  placeSliders();
  update();
}
