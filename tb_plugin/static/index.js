// Explanations dashboard for keras_interp. An ES module loaded by TensorBoard in an iframe: no
// inline scripts, no external assets, every URL relative to this module (so --path_prefix works),
// and names from the logs only ever set as textContent.
//
// Drawing model: each grid cell wants one (run, method, image, step) map. A slider move only
// changes what the cells want; the cells that exist fetch what they lack. A cell paints an answer
// only if it still wants it (a stale request never overwrites a newer one), and in-flight requests
// a cell no longer wants are aborted. Decoded maps and inputs are kept in bounded caches, so
// settings changes recolour without a request and scrolling back costs nothing.
//
// Scale: the grid is virtual. Only the rows in the viewport (plus OVERSCAN rows) exist in the DOM;
// spacer rows above and below keep the scrollbar true. Rows have one fixed height, derived from the
// image size, so the rows in view follow from the scroll position alone. Requests per view do not
// grow with the run's size: the rows in view fetch their images, /predictions is one request per
// run and step, /runs and /scalars one per page. Image URLs carry the run's version, so the browser
// may keep step-addressed answers.
//
// Picture strips (one per run and kind of runs[run].pictures, e.g. class models, and one at the
// compare epoch) follow the same model: each picture wants one (kind, index, step) picture, loads
// when in view, and paints only the answer it still wants.

import { DEFAULT_SETTINGS, SEQUENTIAL, colorBar, decodeInput, decodeMap, formatValue, paint, valueAt } from "./maps.js";
import { openDetail } from "./detail.js";

const base = (path) => new URL(path, import.meta.url).toString();
const NA = "n/a";
const OVERSCAN = 4;          // rows kept beyond each edge of the viewport
// Client caches, bounded so that scrolling through 1,000 rows x 6 methods does not grow memory
// without bound: at most 3,000 decoded maps and 96 MB of their values (maps.js may keep as much
// again in sorted copies for the percentiles, dropped with the map), at most 1,500 decoded inputs
// and 96 MB of their pixels (with their blob URLs, revoked when dropped). A viewport needs a few
// hundred of each.
const MAPS_CACHED = 3000, MAP_BYTES = 96 << 20;
const INPUTS_CACHED = 1500, INPUT_BYTES = 96 << 20;
const PREDICTIONS_CACHED = 256;  // /predictions answers kept (run x step)
const CAPTION_LINES = 3, LINE = 14, INDEX_LINE = 15, PAD = 4, TOOLBAR = 48;
const SORTS = { index: "image index", "conf-desc": "confidence, high first", "conf-asc": "confidence, low first",
  "expl-desc": "explained probability, high first", "expl-asc": "explained probability, low first" };

// TensorBoard 2.21's default run palette (webfiles.zip: settings' colorPalette "default"), in the
// order it hands colours to runs: the i-th run of /data/runs gets colors[i % 7].
const PALETTE = [["#425066", "#8e98a3"], ["#12b5cb", "#12b5cb"], ["#e52592", "#e52592"], ["#f9ab00", "#f9ab00"],
  ["#9334e6", "#9334e6"], ["#7cb342", "#7cb342"], ["#e8710a", "#e8710a"]];

// ---- small helpers -----------------------------------------------------------------------------

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "style") Object.assign(node.style, v);
    else if (k === "text") node.textContent = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node[k] = v;
  }
  for (const child of children) node.appendChild(child);
  return node;
}

async function getJSON(path, params) {
  const url = new URL(base(path));
  for (const [k, v] of Object.entries(params || {})) url.searchParams.set(k, v);
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

class Missing extends Error {}

async function fetchBlob(url, signal) {
  const response = await fetch(url, { signal });
  if (response.status === 404) throw new Missing(url);
  if (!response.ok) throw new Error(`image: ${response.status}`);
  return response.blob();
}

const pad = (i) => String(i).padStart(3, "0");  // 7 -> "007", 1000 -> "1000", as summary.py writes
const inputTag = (i) => `keras_interp/input/${pad(i)}`;
const mapTag = (method, i) => `keras_interp/map/${method}/${pad(i)}`;
const pictureTag = (kind, i) => `keras_interp/${kind}/${pad(i)}`;  // kinds come from /runs
const isNumber = (v) => typeof v === "number" && Number.isFinite(v);
const percent = (p) => (isNumber(p) ? `${(100 * p).toFixed(1)}%` : NA);

// fn at most once per animation frame, however many events asked for it in between.
function oncePerFrame(fn) {
  let scheduled = false;
  return () => {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => { scheduled = false; fn(); });
  };
}

// Least recently used first out, bounded by entries and by bytes (a value's size is given when set).
class LRU {
  constructor(entries, bytes, onEvict = () => {}) {
    Object.assign(this, { entries, bytes, onEvict, map: new Map(), size: 0 });
  }
  get(key) {
    const entry = this.map.get(key);
    if (!entry) return undefined;
    this.map.delete(key);
    this.map.set(key, entry);
    return entry.value;
  }
  has(key) { return this.map.has(key); }
  set(key, value, bytes = 0) {
    const old = this.map.get(key);
    if (old) {
      this.map.delete(key);
      this.size -= old.bytes;
      if (old.value !== value) this.onEvict(old.value);
    }
    this.map.set(key, { value, bytes });
    this.size += bytes;
    for (const [k, entry] of this.map) {
      if (this.map.size <= this.entries && this.size <= this.bytes) break;
      if (k === key) continue;
      this.map.delete(k);
      this.size -= entry.bytes;
      this.onEvict(entry.value);
    }
  }
  delete(key) {
    const entry = this.map.get(key);
    if (!entry) return;
    this.map.delete(key);
    this.size -= entry.bytes;
    this.onEvict(entry.value);
  }
}

// ---- look: TensorBoard's cards, pane and typography, in both of its themes ----------------------

const STYLE = `
:root { --ki-bg: #f5f6f7; --ki-fg: #212121; --ki-card: #ffffff; --ki-border: #ebebeb; --ki-muted: #616161;
  --ki-shadow: 0 1px 3px rgba(0,0,0,.12), 0 1px 2px rgba(0,0,0,.08); --ki-accent: #f57c00; --ki-hover: #f1f3f4;
  --ki-size: 128px; color-scheme: light; }
:root[data-theme="dark"] { --ki-bg: #303030; --ki-fg: #e8e8e8; --ki-card: #3a3a3a; --ki-border: #555555;
  --ki-muted: #a0a0a0; --ki-shadow: 0 1px 3px rgba(0,0,0,.5); --ki-accent: #ef8d32; --ki-hover: #454545; color-scheme: dark; }
html, body { margin: 0; background: var(--ki-bg); color: var(--ki-fg); overflow-anchor: none; }
body { font: 13px/1.4 Roboto, "Helvetica Neue", Arial, sans-serif; }
#app { display: flex; align-items: flex-start; min-height: 100vh; }
#sidebar { width: 240px; flex: none; position: sticky; top: 0; height: 100vh; overflow: auto; box-sizing: border-box;
  background: var(--ki-card); border-right: 1px solid var(--ki-border); }
#sidebar section { padding: 10px 16px; border-bottom: 1px solid var(--ki-border); }
#sidebar h3 { margin: 0 0 6px; font-size: 12px; font-weight: 500; color: var(--ki-muted); text-transform: uppercase; letter-spacing: .04em; }
#sidebar label.row { display: flex; align-items: center; gap: 6px; min-height: 24px; cursor: pointer; }
#sidebar label.field { display: grid; grid-template-columns: 64px minmax(0, 1fr) 38px; align-items: center; gap: 6px; min-height: 28px; }
#sidebar label.field > :nth-child(2) { width: 100%; min-width: 0; box-sizing: border-box; margin: 0; }
#sidebar label.field > select:nth-child(2) { grid-column: 2 / 4; }
#sidebar .value { color: var(--ki-muted); text-align: right; font-size: 12px; font-variant-numeric: tabular-nums; }
.run-name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.swatch { width: 12px; height: 12px; border-radius: 2px; flex: none; background: var(--run); }
#runs input, #methods input { accent-color: var(--run, var(--ki-accent)); margin: 0; }
select, input, button { font: inherit; color: inherit; }
select { background: var(--ki-card); border: 1px solid var(--ki-border); border-radius: 3px; padding: 1px 2px; }
input[type=range] { accent-color: var(--ki-accent); }
button { background: var(--ki-card); border: 1px solid var(--ki-border); border-radius: 4px; padding: 4px 10px; cursor: pointer; }
button:hover { background: var(--ki-hover); }
#main { flex: 1; min-width: 0; padding: 0 16px 16px; }
.toolbar { position: sticky; top: 0; z-index: 4; height: ${TOOLBAR}px; box-sizing: border-box; margin: 0 -16px 16px; padding: 0 16px;
  display: flex; align-items: center; gap: 12px; background: var(--ki-card); border-bottom: 1px solid var(--ki-border);
  box-shadow: 0 2px 4px rgba(0,0,0,.15); white-space: nowrap; }
.toolbar .label { color: var(--ki-muted); }
#epoch { width: 220px; }
#epoch-b { width: 140px; }
#row-count { color: var(--ki-muted); margin-left: auto; }
.card { background: var(--ki-card); border: 1px solid var(--ki-border); border-radius: 4px; box-shadow: var(--ki-shadow);
  margin-bottom: 16px; }
.card-title { padding: 10px 16px 6px; font-size: 14px; font-weight: 500; }
.card-body { padding: 4px 16px 12px; }
.grid-card { display: inline-block; min-width: 100%; box-sizing: border-box; }
#grid { border-collapse: separate; border-spacing: 0; overflow-anchor: none; }
#grid thead { position: sticky; top: ${TOOLBAR}px; z-index: 3; background: var(--ki-card); }
#grid th { font-weight: 500; font-size: 12px; text-align: left; padding: 6px ${PAD}px; white-space: nowrap; background: var(--ki-card); }
#grid tr.columns th { color: var(--ki-muted); border-bottom: 1px solid var(--ki-border); max-width: var(--ki-size); overflow: hidden; text-overflow: ellipsis; }
#grid th.run-group { border-top: 3px solid var(--run); color: var(--ki-fg); font-size: 13px; }
#grid th.run-group .swatch { display: inline-block; vertical-align: -1px; margin-right: 6px; }
#grid td { padding: ${PAD}px; vertical-align: top; }
#grid .group-start { border-left: 1px solid var(--ki-border); }
#grid tr.image-row > td { border-bottom: 1px solid var(--ki-border); }
.box { width: var(--ki-size); height: var(--ki-size); position: relative; display: flex; align-items: center; justify-content: center;
  background: var(--ki-bg); border-radius: 2px; }
.box > img, .box > canvas { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; display: block; }
td.cell .box { cursor: zoom-in; }
.na { color: var(--ki-muted); font-size: 12px; }
.input-box { width: max(var(--ki-size), 140px); }
.caption { width: max(var(--ki-size), 140px); height: ${CAPTION_LINES * LINE}px; overflow: hidden; font-size: 11px; line-height: ${LINE}px;
  margin-top: 4px; color: var(--ki-muted); }
.caption[data-correct="1"] { box-shadow: inset 3px 0 #7cb342; padding-left: 5px; box-sizing: border-box; }
.caption[data-correct="0"] { box-shadow: inset 3px 0 #e52592; padding-left: 5px; box-sizing: border-box; }
.index-label { font-size: 11px; color: var(--ki-muted); height: ${INDEX_LINE}px; line-height: ${INDEX_LINE}px; }
#grid tr.spacer > td { padding: 0; border: 0; }
#value-tip { position: fixed; z-index: 10; pointer-events: none; background: var(--ki-card); color: var(--ki-fg); border: 1px solid var(--ki-border);
  border-radius: 3px; padding: 1px 5px; font-size: 11px; box-shadow: var(--ki-shadow); display: none; font-variant-numeric: tabular-nums; }
#charts .chart { display: inline-block; margin: 4px 16px 4px 0; vertical-align: top; }
#charts .chart-title { font-size: 12px; }
.strip { padding: 4px 16px 10px; }
.strip-head { display: flex; align-items: center; gap: 8px; margin: 4px 0; }
.strip-run { display: inline-flex; align-items: center; gap: 4px; font-size: 12px; color: var(--ki-muted); }
.strip-title { font-size: 13px; font-weight: 500; }
.strip-missing { color: var(--ki-muted); font-size: 12px; }
.strip-row { white-space: nowrap; overflow-x: auto; }
.picture-item { display: inline-block; margin: 0 6px 0 0; vertical-align: top; text-align: center; }
.picture { width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated; }
.picture-item .na { width: 96px; height: 96px; line-height: 96px; text-align: center; }
.picture-caption { font-size: 11px; width: 96px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
#hover-bar { min-height: 30px; margin-top: 6px; }
.hint { color: var(--ki-muted); font-size: 11px; }
`;

// TensorBoard marks its dark theme with body.dark-mode on its own (same-origin) document, and
// derives it from prefers-color-scheme unless the user overrides it: follow that class when the
// parent is TensorBoard, the media query otherwise (the page opened on its own).
function watchTheme(onChange) {
  const media = window.matchMedia("(prefers-color-scheme: dark)");
  let body = null;
  try {
    if (window.parent !== window && window.parent.document.querySelector("tb-webapp, tf-tensorboard")) body = window.parent.document.body;
  } catch { /* not same-origin: no TensorBoard to follow */ }
  const apply = () => {
    const dark = body ? body.classList.contains("dark-mode") : media.matches;
    const theme = dark ? "dark" : "light";
    if (document.documentElement.dataset.theme === theme) return;
    document.documentElement.dataset.theme = theme;
    onChange(dark);
  };
  if (body) new MutationObserver(apply).observe(body, { attributes: true, attributeFilter: ["class"] });
  media.addEventListener("change", apply);
  apply();
}

// ---- URL state -----------------------------------------------------------------------------------
//
// The view is one parameter, `ki`, in TensorBoard's own URL hash: TensorBoard parses its hash as
// `#<tab>&key=value&...` and keeps keys it does not know, so `http://host/#keras_interp&ki=...`
// opens this tab with this view (tried with TensorBoard 2.21: the hash survives a reload and a new
// tab). It is written with history.replaceState on the (same-origin) parent: no hashchange event,
// no history entry per slider move, and TensorBoard does not reload the tab. Opened on its own
// (no TensorBoard parent), the page keeps the state in its own hash.

function hostWindow() {
  try {
    if (window.parent !== window && window.parent.location.href) return window.parent;
  } catch { /* cross-origin parent */ }
  return window;
}

function hashParts(hash) {
  return hash.replace(/^#/, "").split("&").filter(Boolean);
}

function readURLState() {
  const host = hostWindow();
  for (const win of host === window ? [window] : [host, window]) {
    const part = hashParts(win.location.hash).find((p) => p.startsWith("ki="));
    if (part) {
      try {
        return new URLSearchParams(decodeURIComponent(part.slice(3)));
      } catch { /* a malformed link: start from the defaults */ }
    }
  }
  return new URLSearchParams();
}

function writeURLState(params) {
  const host = hostWindow();
  const parts = hashParts(host.location.hash).filter((p) => !p.startsWith("ki="));
  const tab = parts.find((p) => !p.includes("="));
  if (host !== window && tab && tab !== "keras_interp") return;  // another dashboard is shown now
  if (host !== window && !tab) parts.unshift("keras_interp");
  const value = params.toString();
  if (value) parts.push(`ki=${encodeURIComponent(value)}`);
  const url = new URL(host.location.href);
  url.hash = parts.join("&");
  if (url.href !== host.location.href) host.history.replaceState(host.history.state, "", url.href);
}

// ---- the dashboard -------------------------------------------------------------------------------

export async function render() {
  document.head.appendChild(el("style", { id: "ki-style", text: STYLE }));
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
  // Every run of TensorBoard counts (e.g. the train/ and validation/ runs of keras.callbacks.TensorBoard).
  const known = Array.isArray(order) ? order : [];
  const colourOrder = [...known, ...names.filter((n) => !known.includes(n))];
  let dark = false;
  const colorOf = (run) => PALETTE[Math.max(0, colourOrder.indexOf(run)) % PALETTE.length][dark ? 1 : 0];
  const label = (run, method) => (runs[run].labels && runs[run].labels[method]) || method;

  // ---- state, from the URL ----
  const url = readURLState();
  const num = (key, fallback, lo = -Infinity, hi = Infinity) => {
    const v = Number(url.get(key));
    return url.has(key) && Number.isFinite(v) ? Math.max(lo, Math.min(hi, v)) : fallback;
  };
  const classParam = (key) => (url.has(key) && /^\d+$/.test(url.get(key)) ? url.get(key) : "");
  const pick = (value, allowed, fallback) => (allowed.includes(value) ? value : fallback);
  const state = {
    runs: url.getAll("run").filter((r) => runs[r]),
    step: url.has("step") ? num("step", null) : null,
    stepB: url.has("cmp") ? num("cmp", null) : null,
    compare: url.has("cmp"),
    hidden: new Set(url.getAll("hide")),
    filters: { true: classParam("true"), pred: classParam("pred"), show: pick(url.get("show"), ["all", "correct", "wrong"], "all") },
    sort: pick(url.get("sort"), Object.keys(SORTS), "index"),
    settings: {
      polarity: pick(url.get("pol"), ["auto", "positive", "negative", "both"], DEFAULT_SETTINGS.polarity),
      clip: [num("lo", DEFAULT_SETTINGS.clip[0], 0, 100), num("hi", DEFAULT_SETTINGS.clip[1], 0, 100)],
      colormap: pick(url.get("cmap"), SEQUENTIAL, DEFAULT_SETTINGS.colormap),
      opacity: num("op", DEFAULT_SETTINGS.opacity, 0, 1),
      mode: pick(url.get("mode"), ["heat", "outline"], DEFAULT_SETTINGS.mode),
    },
    size: num("size", 128, 64, 320),
    at: url.has("at") ? num("at", null) : null,
  };
  if (!state.runs.length) state.runs = [names[0]];
  if (state.settings.clip[0] > state.settings.clip[1]) state.settings.clip.reverse();

  function urlParams() {
    const p = new URLSearchParams();
    for (const r of state.runs) p.append("run", r);
    if (isNumber(state.step)) p.set("step", String(state.step));
    if (state.compare && isNumber(state.stepB)) p.set("cmp", String(state.stepB));
    for (const m of [...state.hidden].sort()) p.append("hide", m);
    if (state.filters.true !== "") p.set("true", state.filters.true);
    if (state.filters.pred !== "") p.set("pred", state.filters.pred);
    if (state.filters.show !== "all") p.set("show", state.filters.show);
    if (state.sort !== "index") p.set("sort", state.sort);
    const s = state.settings, d = DEFAULT_SETTINGS;
    if (s.polarity !== d.polarity) p.set("pol", s.polarity);
    if (s.clip[0] !== d.clip[0]) p.set("lo", String(s.clip[0]));
    if (s.clip[1] !== d.clip[1]) p.set("hi", String(s.clip[1]));
    if (s.colormap !== d.colormap) p.set("cmap", s.colormap);
    if (s.opacity !== d.opacity) p.set("op", String(s.opacity));
    if (s.mode !== d.mode) p.set("mode", s.mode);
    if (state.size !== 128) p.set("size", String(state.size));
    const at = firstRowInView();
    if (at !== null && at !== view.order[0]) p.set("at", String(at));
    return p;
  }
  let urlTimer = 0;
  const saveURL = () => {
    clearTimeout(urlTimer);
    urlTimer = setTimeout(() => {
      try { writeURLState(urlParams()); } catch (error) { console.error(error); }
    }, 150);
  };

  // ---- controls ----
  const field = (text, control, value) => el("label", { className: "field" }, [el("span", { text }), control, ...(value ? [value] : [])]);  // a select spans the value's column
  const section = (title, children, id) => el("section", id ? { id: `${id}-section` } : {}, [el("h3", { text: title }), ...children]);
  const options = (pairs) => pairs.map(([value, text]) => el("option", { value, text }));

  const runList = el("div", { id: "runs" });
  const runBoxes = names.map((name) => {
    const box = el("input", { type: "checkbox", checked: state.runs.includes(name), dataset: { run: name } });
    const row = el("label", { className: "row run run-colored", title: name, dataset: { run: name } },
      [box, el("span", { className: "swatch" }), el("span", { className: "run-name", text: name })]);
    runList.appendChild(row);
    return { name, box, row };
  });
  const methodList = el("div", { id: "methods" });
  const sizeSlider = el("input", { id: "size", type: "range", min: 64, max: 320, step: 8, value: state.size });
  const sizeValue = el("span", { className: "value" });
  const polarity = el("select", { id: "polarity" }, options([["auto", "auto"], ["positive", "positive"], ["negative", "negative"], ["both", "both (diverging)"]]));
  const clipLow = el("input", { id: "clip-low", type: "range", min: 0, max: 100, step: 0.1,
    title: "percentile of the map's magnitude below which nothing is drawn" });
  const clipHigh = el("input", { id: "clip-high", type: "range", min: 0, max: 100, step: 0.1,
    title: "percentile of the map's magnitude above which the colour saturates" });
  const clipLowValue = el("span", { className: "value" }), clipHighValue = el("span", { className: "value" });
  const colormap = el("select", { id: "colormap" }, options(SEQUENTIAL.map((n) => [n, n])));
  const opacity = el("input", { id: "opacity", type: "range", min: 0, max: 1, step: 0.05 });
  const opacityValue = el("span", { className: "value" });
  const mode = el("select", { id: "mode" }, options([["heat", "heat"], ["outline", "outline"]]));
  const hoverBar = el("div", { id: "hover-bar" }, [el("div", { className: "hint", text: "Hover a map for its colour bar; click it to open it." })]);
  const filterTrue = el("select", { id: "filter-true" });
  const filterPred = el("select", { id: "filter-pred" });
  const filterShow = el("select", { id: "filter-correct" }, options([["all", "all"], ["correct", "correct"], ["wrong", "wrong"]]));
  const sortSelect = el("select", { id: "sort" }, options(Object.entries(SORTS)));
  const filterNote = el("div", { className: "hint", id: "filter-note" });

  const slider = el("input", { id: "epoch", type: "range", min: 0, step: 1 });
  const sliderB = el("input", { id: "epoch-b", type: "range", min: 0, step: 1 });
  const epochLabel = el("span", { id: "epoch-label" });
  const epochLabelB = el("span", { id: "epoch-b-label" });
  const compare = el("input", { id: "compare", type: "checkbox", checked: state.compare });
  const rowCount = el("span", { id: "row-count" });
  const download = el("button", { id: "download", type: "button", text: "Download PNG", title: "the rows in view, as shown" });

  const sidebar = el("aside", { id: "sidebar" }, [
    section("Runs", [runList], "runs"),
    section("Methods", [methodList], "methods"),
    section("Image size", [field("size", sizeSlider, sizeValue)], "size"),
    section("Map", [field("polarity", polarity), field("clip low", clipLow, clipLowValue), field("clip high", clipHigh, clipHighValue),
      field("colormap", colormap), field("opacity", opacity, opacityValue), field("draw", mode), hoverBar], "map"),
    section("Filter", [field("true class", filterTrue), field("predicted", filterPred), field("show", filterShow), filterNote], "filter"),
    section("Sort", [field("by", sortSelect)], "sort"),
  ]);
  const toolbar = el("div", { className: "toolbar" }, [
    el("span", { className: "label", text: "epoch" }), slider, epochLabel,
    el("label", { className: "label", text: "compare " }, [compare]), sliderB, epochLabelB,
    rowCount, download,
  ]);
  const charts = el("div", { id: "charts", className: "card-body" });
  const chartsCard = el("div", { className: "card", id: "charts-card" }, [el("div", { className: "card-title", text: "Scalars" }), charts]);
  const strips = el("div", { id: "pictures" });
  const grid = el("table", { id: "grid" });
  const thead = el("thead"), tbody = el("tbody");
  const topSpacer = el("tr", { className: "spacer" }, [el("td")]);
  const bottomSpacer = el("tr", { className: "spacer" }, [el("td")]);
  grid.append(thead, tbody);
  const gridCard = el("div", { className: "card grid-card" }, [grid]);
  const valueTip = el("div", { id: "value-tip" });
  const main = el("main", { id: "main" }, [toolbar, chartsCard, strips, gridCard]);
  document.body.append(el("div", { id: "app" }, [sidebar, main]), valueTip);

  function refreshColours() {
    for (const node of document.querySelectorAll(".run-colored")) node.style.setProperty("--run", colorOf(node.dataset.run));
  }
  watchTheme((isDark) => { dark = isDark; refreshColours(); });

  // ---- caches ----
  const inputs = new LRU(INPUTS_CACHED, INPUT_BYTES, (entry) => entry.url && URL.revokeObjectURL(entry.url));
  const maps = new LRU(MAPS_CACHED, MAP_BYTES);  // key -> decoded map, or null when not logged (404)
  const predictions = new LRU(PREDICTIONS_CACHED, Infinity);  // run + step -> {promise, value}
  const scalars = new Map();

  function imageURL(run, tag, step) {
    const u = new URL(base("./image"));
    u.searchParams.set("run", run);
    u.searchParams.set("tag", tag);
    u.searchParams.set("step", String(step));
    if (runs[run].version !== undefined && runs[run].version !== null) u.searchParams.set("v", String(runs[run].version));
    return u.toString();
  }

  // {promise, value (once decoded), url (a blob URL the <img> shows)}; one request per input.
  function inputFor(run, index) {
    const key = `${run}\n${index}`;
    let entry = inputs.get(key);
    if (!entry) {
      entry = { value: null, url: null };
      entry.promise = (async () => {
        const blob = await fetchBlob(imageURL(run, inputTag(index), runs[run].steps[0] ?? 0));
        entry.value = await decodeInput(blob);
        entry.url = URL.createObjectURL(blob);
        if (inputs.get(key) === entry) inputs.set(key, entry, entry.value.pixels.byteLength);
        else URL.revokeObjectURL(entry.url);  // evicted while loading
        return entry;
      })();
      entry.promise.catch(() => { if (inputs.get(key) === entry) inputs.delete(key); });
      inputs.set(key, entry, 0);
    }
    return entry;
  }

  const mapKey = (run, method, index, step) => `${run}\n${method}\n${index}\n${step}`;
  // The decoded map, or null when that map was not logged. No abort: for the detail view.
  async function mapFor(run, method, index, step) {
    const key = mapKey(run, method, index, step);
    if (maps.has(key)) return maps.get(key);
    if (!runs[run].methodSteps[method] || !runs[run].methodSteps[method].has(step)) return null;
    try {
      const map = await decodeMap(await fetchBlob(imageURL(run, mapTag(method, index), step)));
      maps.set(key, map, map.values.byteLength);
      return map;
    } catch (error) {
      if (!(error instanceof Missing)) throw error;
      maps.set(key, null, 0);
      return null;
    }
  }

  function predictionsFor(run, step) {
    const key = `${run}\n${step}`;
    let entry = predictions.get(key);
    if (!entry) {
      entry = { value: null };
      entry.promise = getJSON("./predictions", { run, step }).catch((error) => { console.error(error); return {}; })
        .then((answer) => (entry.value = answer));
      predictions.set(key, entry);
    }
    return entry;
  }

  // ---- the view: column groups (one per checked run), the row order, the rows in the DOM ----
  const view = {
    groups: [],       // [{run, columns: [{run, method, which}]}]
    images: [],       // the union of the checked runs' image indices
    order: [],        // image indices after filters and sort
    orderReady: false,
    rowHeight: 0,
    rows: new Map(),  // image index -> row in the DOM
    steps: [],        // the union of the checked runs' steps: the slider's positions
  };
  const cellOf = new WeakMap();  // td -> cell
  let generation = 0;            // bumped by every update(); late answers of older ones are dropped
  let detail = null;

  const stepA = () => view.steps[Number(slider.value)];
  const stepB = () => view.steps[Number(sliderB.value)];

  function show(cell, status, step) {
    cell.td.dataset.state = status;
    cell.canvas.dataset.loaded = status === "loaded" ? "1" : "0";
    if (status === "loaded") cell.canvas.dataset.step = String(step);
    cell.canvas.style.display = status === "missing" ? "none" : "";
    cell.canvas.style.opacity = status === "loading" ? "0.4" : "1";
    cell.na.style.display = status === "missing" ? "" : "none";
  }

  function draw(cell, input, map, step) {
    cell.data = { input, map };
    paint(cell.canvas, input, map, state.settings);
    show(cell, "loaded", step);
  }

  async function loadCell(cell) {
    const { key, run, method, index, step } = cell.want;
    if (cell.dead || key === null || (cell.drawn && cell.drawn.key === key) || (cell.pending && cell.pending.key === key)) return;
    if (cell.pending) cell.pending.controller.abort();
    const controller = new AbortController();
    cell.pending = { key, controller };
    try {
      let map = maps.get(key);
      const [input] = await Promise.all([
        inputFor(run, index).promise.then((entry) => entry.value),
        map !== undefined ? null : fetchBlob(imageURL(run, mapTag(method, index), step), controller.signal)
          .then(decodeMap).then((decoded) => { map = decoded; maps.set(key, map, map.values.byteLength); })
          .catch((error) => {
            if (!(error instanceof Missing)) throw error;
            map = null;
            maps.set(key, null, 0);
          }),
      ]);
      if (cell.dead || cell.want.key !== key) return;  // the cell moved on while this was in flight
      cell.drawn = { key, step, status: map ? "loaded" : "missing" };
      if (map) draw(cell, input, map, step);
      else show(cell, "missing", step);
    } catch (error) {
      if (error.name === "AbortError" || cell.dead || cell.want.key !== key) return;
      cell.drawn = { key, step, status: "missing" };  // e.g. the input is missing: nothing to draw on
      show(cell, "missing", step);
    } finally {
      if (cell.pending && cell.pending.key === key) cell.pending = null;
    }
  }

  // Point a cell at the current step of its column: from the caches when they hold it.
  function want(cell, index) {
    const { run, method, which } = cell.column;
    const step = which === "b" ? stepB() : stepA();
    const logged = runs[run].imageSet.has(index) && runs[run].methodSteps[method].has(step);
    const key = logged ? mapKey(run, method, index, step) : `missing\n${step}`;
    if (cell.want.key === key) return;
    cell.want = { key, run, method, index, step };
    if (cell.pending && cell.pending.key !== key) {
      cell.pending.controller.abort();
      cell.pending = null;
    }
    if (!logged) {
      cell.drawn = { key, step, status: "missing" };
      show(cell, "missing", step);
      return;
    }
    const map = maps.get(key), input = inputs.get(`${run}\n${index}`);
    if (map === null) {
      cell.drawn = { key, step, status: "missing" };
      show(cell, "missing", step);
    } else if (map && input && input.value) {
      cell.drawn = { key, step, status: "loaded" };
      draw(cell, input.value, map, step);
    } else if (cell.drawn && cell.drawn.key === key) {
      show(cell, cell.drawn.status, step);  // back to what it shows (e.g. after a quick move away)
    } else {
      show(cell, "loading", step);
      loadCell(cell);
    }
  }

  function captionOf(run, index) {
    const info = runs[run], answer = predictionsFor(run, stepA()).value;
    if (!answer) return null;
    const p = answer[String(index)];
    if (!p) return { text: "", correct: null };
    const name = (k) => (isNumber(k) ? (info.class_names && info.class_names[k] !== undefined ? info.class_names[k] : String(k)) : NA);
    let text = `predicted ${name(p.predicted)} (${percent(p.predicted_probability)})`;
    if (info.labeled || p.explained !== p.predicted) text += `, explaining ${name(p.explained)} (${percent(p.explained_probability)})`;
    const truth = trueLabel(run, index, answer);
    return { text, correct: isNumber(truth) && isNumber(p.predicted) ? truth === p.predicted : null };
  }

  function showCaption(group, run, index) {
    const caption = captionOf(run, index);
    if (!caption) return;
    group.caption.textContent = caption.text;
    group.caption.title = caption.text;
    group.caption.dataset.step = String(stepA());
    if (caption.correct === null) delete group.caption.dataset.correct;
    else group.caption.dataset.correct = caption.correct ? "1" : "0";
  }

  function makeRow(index) {
    const tr = el("tr", { className: "image-row", dataset: { index: String(index) } });
    const row = { index, tr, groups: [], cells: [], dead: false };
    for (const group of view.groups) {
      const { run } = group, has = runs[run].imageSet.has(index);
      const img = el("img", { className: "input", alt: `input ${index}` });
      const na = el("div", { className: "na", text: NA, style: { display: has ? "none" : "" } });
      const caption = el("div", { className: "caption" });
      const td = el("td", { className: "input-cell group-start" }, [
        el("div", { className: "box input-box" }, [img, na]),
        caption,
      ]);
      img.style.display = "none";
      tr.appendChild(td);
      const g = { run, img, caption };
      row.groups.push(g);
      if (has) {
        const entry = inputFor(run, index);
        const showInput = () => { img.src = entry.url; img.style.display = ""; };
        if (entry.url) showInput();
        else entry.promise.then(() => { if (!row.dead) showInput(); }).catch(() => { if (!row.dead) na.style.display = ""; });
        showCaption(g, run, index);
      }
      for (const column of group.columns) {
        const canvas = el("canvas", { className: "overlay", width: 1, height: 1 });
        const cellNA = el("div", { className: "na", text: NA, style: { display: "none" } });
        const cellTd = el("td", { className: "cell" }, [el("div", { className: "box" }, [canvas, cellNA])]);
        const cell = { column, td: cellTd, canvas, na: cellNA, want: { key: null }, drawn: null, pending: null, data: null, dead: false, index };
        cellOf.set(cellTd, cell);
        tr.appendChild(cellTd);
        row.cells.push(cell);
      }
    }
    tr.firstChild.appendChild(el("div", { className: "index-label", text: `image ${index}` }));
    for (const cell of row.cells) want(cell, index);
    return row;
  }

  function dispose(row) {
    row.dead = true;
    for (const cell of row.cells) {
      cell.dead = true;
      if (cell.pending) cell.pending.controller.abort();
    }
  }

  // ---- virtual rows ----
  function range() {
    const n = view.order.length, h = view.rowHeight || 1;
    const top = tbody.getBoundingClientRect().top;
    const first = Math.max(0, Math.floor(-top / h) - OVERSCAN);
    const last = Math.min(n, Math.ceil((window.innerHeight - top) / h) + OVERSCAN);
    return [Math.min(first, n), Math.max(Math.min(first, n), last)];
  }

  function firstRowInView() {
    if (!view.orderReady || !view.order.length) return null;
    const top = tbody.getBoundingClientRect().top - TOOLBAR - thead.getBoundingClientRect().height;
    const k = Math.max(0, Math.min(view.order.length - 1, Math.floor(-top / (view.rowHeight || 1))));
    return top < 0 ? view.order[k] : view.order[0];
  }

  function renderRows() {
    const [a, b] = range();
    const wanted = view.order.slice(a, b);
    const keep = new Set(wanted);
    for (const [index, row] of view.rows) {
      if (!keep.has(index)) {
        dispose(row);
        view.rows.delete(index);
      }
    }
    for (const index of wanted) if (!view.rows.has(index)) view.rows.set(index, makeRow(index));
    const h = view.rowHeight;
    topSpacer.firstChild.style.height = `${a * h}px`;
    bottomSpacer.firstChild.style.height = `${(view.order.length - b) * h}px`;
    topSpacer.style.display = a ? "" : "none";
    bottomSpacer.style.display = view.order.length - b ? "" : "none";
    const nodes = [topSpacer, ...wanted.map((i) => view.rows.get(i).tr), bottomSpacer];
    const current = tbody.children;
    if (current.length !== nodes.length || nodes.some((node, k) => current[k] !== node)) tbody.replaceChildren(...nodes);
    // The row height is measured once rows exist; if the estimate was off, lay out again.
    const first = wanted.length ? view.rows.get(wanted[0]).tr : null;
    const measured = first ? first.getBoundingClientRect().height : 0;
    if (measured && Math.abs(measured - h) > 0.01) {
      view.rowHeight = measured;
      scheduleRows();
    }
  }
  const scheduleRows = oncePerFrame(renderRows);

  function scrollToImage(index) {
    const k = view.order.indexOf(index);
    if (k < 0) return;
    const gridTop = tbody.getBoundingClientRect().top + window.scrollY;
    window.scrollTo(0, gridTop + k * view.rowHeight - TOOLBAR - thead.getBoundingClientRect().height);
  }

  // ---- filters and sort ----
  // True labels: /runs' image_labels; logs without them (older servers) that logged labels
  // explained the true class, so the explained class stands in for it.
  function trueLabel(run, index, answer) {
    const info = runs[run];
    if (info.image_labels) {
      const v = info.image_labels[String(index)];
      return isNumber(v) ? v : null;
    }
    if (info.labeled && answer && answer[String(index)]) return answer[String(index)].explained;
    return null;
  }

  function classOptions(select, run, current) {
    const info = runs[run], values = new Set();
    (info.class_names || []).forEach((_, k) => values.add(k));
    for (const v of Object.values(info.image_labels || {})) if (isNumber(v)) values.add(v);
    const answer = predictionsFor(run, stepA()).value;
    for (const p of Object.values(answer || {})) if (p && isNumber(p.predicted)) values.add(p.predicted);
    if (current !== "") values.add(Number(current));
    const name = (k) => (info.class_names && info.class_names[k] !== undefined ? `${k}: ${info.class_names[k]}` : String(k));
    const opts = [["", "any"], ...[...values].sort((x, y) => x - y).map((k) => [String(k), name(k)])];
    if (select.options.length !== opts.length || opts.some(([v, t], k) => select.options[k].value !== v || select.options[k].text !== t)) {
      select.replaceChildren(...options(opts));
    }
    select.value = current;
  }

  function computeOrder() {
    const primary = view.groups.length ? view.groups[0].run : null;
    const f = state.filters;
    const info = primary ? runs[primary] : null;
    const needs = primary !== null && (f.pred !== "" || f.show !== "all" || state.sort !== "index" || (f.true !== "" && !info.image_labels));
    const step = stepA();
    let answer = null;
    if (needs) {
      const entry = predictionsFor(primary, step);
      if (!entry.value) {
        const g = generation;
        entry.promise.then(() => { if (g === generation) applyOrder(); });
        return false;  // the previous order stays until this epoch's predictions arrive
      }
      answer = entry.value;
    }
    const p = (i) => (answer && answer[String(i)]) || {};
    let indices = view.images;
    if (f.true !== "") indices = indices.filter((i) => trueLabel(primary, i, answer) === Number(f.true));
    if (f.pred !== "") indices = indices.filter((i) => p(i).predicted === Number(f.pred));
    if (f.show !== "all") {
      indices = indices.filter((i) => {
        const truth = trueLabel(primary, i, answer), predicted = p(i).predicted;
        if (!isNumber(truth) || !isNumber(predicted)) return false;  // unknown: only under "all"
        return (truth === predicted) === (f.show === "correct");
      });
    }
    if (state.sort !== "index") {
      const field = state.sort.startsWith("conf") ? "predicted_probability" : "explained_probability";
      const sign = state.sort.endsWith("asc") ? 1 : -1;
      indices = [...indices].sort((x, y) => {
        const a = p(x)[field], b = p(y)[field];
        if (!isNumber(a) || !isNumber(b)) return (isNumber(a) ? -1 : 0) + (isNumber(b) ? 1 : 0) || x - y;  // unknown last
        return sign * (a - b) || x - y;
      });
    }
    view.order = indices;
    view.orderReady = true;
    grid.dataset.rows = String(indices.length);
    grid.dataset.orderStep = needs ? String(step) : "";
    rowCount.textContent = `${indices.length} of ${view.images.length} images`;
    filterNote.textContent = view.groups.length > 1 ? `Filters and sort use ${primary}'s predictions.` : "";
    if (primary) {
      classOptions(filterTrue, primary, f.true);
      classOptions(filterPred, primary, f.pred);
    }
    return true;
  }

  function applyOrder() {
    if (!computeOrder()) return;
    renderRows();
    if (state.at !== null) {
      scrollToImage(state.at);
      state.at = null;
      scheduleRows();
    }
  }

  // ---- building the columns (runs, methods, compare) ----
  function rowHeightEstimate() {
    return state.size + 4 + CAPTION_LINES * LINE + INDEX_LINE + 2 * PAD + 1;  // box, caption, index, padding, border
  }

  function build() {
    for (const row of view.rows.values()) dispose(row);
    view.rows.clear();
    view.groups = state.runs.map((run) => {
      const columns = [];
      for (const method of runs[run].methods) {
        if (state.hidden.has(method)) continue;
        columns.push({ run, method, which: "a" });
        if (state.compare) columns.push({ run, method, which: "b" });
      }
      return { run, columns };
    });
    view.images = [...new Set(state.runs.flatMap((r) => runs[r].images))].sort((a, b) => a - b);
    view.steps = [...new Set(state.runs.flatMap((r) => runs[r].steps))].sort((a, b) => a - b);
    view.rowHeight = rowHeightEstimate();
    const groupRow = el("tr", { className: "groups" }, view.groups.map((g) => el("th", {
      className: "run-group run-colored", colSpan: 1 + g.columns.length, title: g.run, dataset: { run: g.run },
    }, [el("span", { className: "swatch" }), el("span", { className: "run-name", text: g.run })])));
    const columnRow = el("tr", { className: "columns" });
    for (const g of view.groups) {
      columnRow.appendChild(el("th", { className: "group-start", text: "input" }));
      for (const c of g.columns) {
        const th = el("th", { className: "column", title: label(g.run, c.method) });
        c.th = th;
        columnRow.appendChild(th);
      }
    }
    thead.replaceChildren(groupRow, columnRow);
    const span = view.groups.reduce((n, g) => n + 1 + g.columns.length, 0);
    topSpacer.firstChild.colSpan = bottomSpacer.firstChild.colSpan = Math.max(1, span);
    tbody.replaceChildren(topSpacer, bottomSpacer);
    gridCard.style.display = view.images.length ? "" : "none";  // a run may log pictures only
    // Methods of the checked runs, on/off.
    const methods = [...new Set(state.runs.flatMap((r) => runs[r].methods))].sort();
    methodList.replaceChildren(...methods.map((m) => {
      const box = el("input", { type: "checkbox", checked: !state.hidden.has(m), dataset: { method: m } });
      box.onchange = () => {
        if (box.checked) state.hidden.delete(m);
        else state.hidden.add(m);
        rebuild();
      };
      const run = state.runs.find((r) => runs[r].methods.includes(m));
      return el("label", { className: "row", title: m }, [box, el("span", { className: "run-name", text: label(run, m) })]);
    }));
    if (!methods.length) methodList.replaceChildren(el("div", { className: "hint", text: "no maps logged" }));
    buildStrips();
    buildCharts();
    refreshColours();
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

  // ---- picture strips ----
  let strip = { items: [], strips: [], observer: null, visible: new Set() };

  function showPicture(item, status, step) {
    item.figure.dataset.state = status;
    item.img.dataset.loaded = status === "loaded" ? "1" : "0";
    if (status === "loaded") item.img.dataset.step = String(step);
    item.img.style.display = status === "missing" ? "none" : "";
    item.img.style.opacity = status === "loading" ? "0.4" : "1";
    item.na.style.display = status === "missing" ? "" : "none";
  }

  async function loadPicture(item) {
    const { key, step } = item.want;
    if (key === null || item.dead || (item.drawn && item.drawn.key === key) || (item.pending && item.pending.key === key)) return;
    if (item.pending) item.pending.controller.abort();
    const controller = new AbortController();
    item.pending = { key, controller };
    try {
      const blob = await fetchBlob(imageURL(item.run, pictureTag(item.kind, item.index), step), controller.signal);
      const url = URL.createObjectURL(blob);
      try {
        const probe = new Image();
        probe.src = url;
        await probe.decode();  // decoded before it replaces the picture shown: no blank frame
      } catch (error) {
        URL.revokeObjectURL(url);
        throw error;
      }
      if (item.dead || item.want.key !== key) {  // rebuilt, or moved on while this was in flight
        URL.revokeObjectURL(url);
        return;
      }
      if (item.url) URL.revokeObjectURL(item.url);
      item.url = url;
      item.img.src = url;
      item.drawn = { key, step, status: "loaded" };
      showPicture(item, "loaded", step);
    } catch (error) {
      if (error.name === "AbortError" || item.dead || item.want.key !== key) return;
      item.drawn = { key, step, status: "missing" };  // e.g. no picture of this class at this step
      showPicture(item, "missing", step);
    } finally {
      if (item.pending && item.pending.key === key) item.pending = null;
    }
  }

  function buildStrips() {
    if (strip.observer) strip.observer.disconnect();
    for (const item of strip.items) {
      item.dead = true;
      if (item.pending) item.pending.controller.abort();
      if (item.url) URL.revokeObjectURL(item.url);
    }
    const list = [], items = [];
    for (const run of state.runs) {
      const pictures = runs[run].pictures || {};
      for (const kind of Object.keys(pictures).sort()) {
        for (const which of state.compare ? ["a", "b"] : ["a"]) {
          const title = el("span", { className: "strip-title" });
          const chip = el("span", { className: "strip-run run-colored", dataset: { run } }, [el("span", { className: "swatch" }), el("span", { text: run })]);
          const note = el("div", { className: "strip-missing", style: { display: "none" } });
          const its = pictures[kind].indices.map((i) => {
            const text = (pictures[kind].labels || {})[String(i)] ?? String(i);
            const img = el("img", { className: "picture", alt: text, dataset: { kind, index: String(i), loaded: "0" } });
            const na = el("div", { className: "na", text: NA, style: { display: "none" } });
            const caption = el("div", { className: "picture-caption", text, title: text });
            const figure = el("figure", { className: "picture-item" }, [img, na, caption]);
            return { run, kind, index: i, figure, img, na, want: { key: null }, drawn: null, pending: null, url: null, dead: false };
          });
          const row = el("div", { className: "strip-row" }, its.map((item) => item.figure));
          const div = el("div", { className: "strip", dataset: { kind, which, run } }, [el("div", { className: "strip-head" }, [chip, title]), note, row]);
          list.push({ run, kind, which, div, title, note, row, items: its });
          items.push(...its);
        }
      }
    }
    strips.replaceChildren(...(list.length ? [el("div", { className: "card" }, list.map((s) => s.div))] : []));
    const byFigure = new Map(items.map((item) => [item.figure, item]));
    const visible = new Set();
    // Pictures load when they scroll into view.
    const observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        const item = byFigure.get(entry.target);
        if (!item) continue;
        if (entry.isIntersecting) { visible.add(item); loadPicture(item); } else visible.delete(item);
      }
    });
    byFigure.forEach((_, figure) => observer.observe(figure));
    strip = { items, strips: list, observer, visible };
  }

  function updateStrips() {
    for (const s of strip.strips) {
      const step = s.which === "a" ? stepA() : stepB();
      const kind = runs[s.run].pictures[s.kind], logged = kind.steps.includes(step);
      s.div.dataset.step = String(step);
      s.div.dataset.state = logged ? "shown" : "missing";
      s.title.textContent = `${kind.title}: epoch ${step + 1}${s.which === "b" ? " (compare)" : ""}`;
      s.note.textContent = logged ? "" : `${NA}: no ${kind.title} logged at epoch ${step + 1}`;
      s.note.style.display = logged ? "none" : "";
      s.row.style.display = logged ? "" : "none";
      const key = String(step);
      for (const item of s.items) {
        if (item.want.key === key) continue;
        item.want = { key, step };
        if (item.pending && item.pending.key !== key) {
          item.pending.controller.abort();
          item.pending = null;
        }
        if (!logged) item.drawn = { key, step, status: "missing" };  // the kind was not logged then
        if (item.drawn && item.drawn.key === key) showPicture(item, item.drawn.status, step);
        else showPicture(item, "loading", step);
      }
    }
    for (const item of strip.visible) loadPicture(item);
  }

  // ---- scalars ----
  function sparkline(tag, series) {
    const width = 180, height = 48, ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    const all = series.flatMap((s) => s.points.filter((p) => isNumber(p[0]) && isNumber(p[1])));  // null = not a number
    if (all.length) {
      const steps = all.map((p) => p[0]), values = all.map((p) => p[1]);
      const [s0, s1] = [Math.min(...steps), Math.max(...steps)];
      const [v0, v1] = [Math.min(0, ...values), Math.max(1, ...values)];
      for (const s of series) {
        const finite = s.points.filter((p) => isNumber(p[0]) && isNumber(p[1]));
        const line = document.createElementNS(ns, "polyline");
        line.setAttribute("fill", "none");
        line.setAttribute("class", "run-colored");  // its colour follows the theme
        line.dataset.run = s.run;
        line.style.stroke = "var(--run)";
        line.setAttribute("stroke-width", "2");
        line.setAttribute("points", finite.map(([x, v]) =>
          `${((x - s0) / Math.max(1, s1 - s0)) * (width - 4) + 2},${height - 2 - ((v - v0) / (v1 - v0)) * (height - 4)}`).join(" "));
        svg.appendChild(line);
      }
    }
    const last = (points) => {
      const v = points.length ? points[points.length - 1][1] : null;
      return isNumber(v) ? v.toFixed(3) : NA;
    };
    return el("div", { className: "chart" }, [
      el("div", { className: "chart-title", text: `${tag}: ${series.map((s) => last(s.points)).join(" / ")}` }),
      svg,
    ]);
  }

  function buildCharts() {
    const chosen = [...state.runs];
    Promise.all(chosen.map((run) => {
      if (!scalars.has(run)) {
        const promise = getJSON("./scalars", { run });
        promise.catch(() => scalars.delete(run));
        scalars.set(run, promise);
      }
      return scalars.get(run).catch(() => ({}));
    })).then((answers) => {
      if (chosen.join("\n") !== state.runs.join("\n")) return;  // the runs changed meanwhile
      const tags = [...new Set(answers.flatMap((a) => Object.keys(a)))].sort();
      charts.replaceChildren(...tags.map((tag) => sparkline(tag.replace("explanations/", ""),
        chosen.map((run, k) => ({ run, points: answers[k][tag] || [] })).filter((s) => s.points.length))));
      chartsCard.style.display = tags.length ? "" : "none";
      refreshColours();
    });
  }

  // ---- update: every cell and strip points at the chosen epochs ----
  function update() {
    const g = ++generation;
    state.step = stepA();
    state.stepB = stepB();
    sliderB.disabled = !state.compare;
    sliderB.style.display = epochLabelB.style.display = state.compare ? "" : "none";
    const a = stepA(), b = stepB();
    epochLabel.textContent = isNumber(a) ? `${a + 1}` : NA;
    epochLabelB.textContent = state.compare && isNumber(b) ? `${b + 1}` : "";
    for (const group of view.groups) {
      for (const c of group.columns) c.th.textContent = `${label(group.run, c.method)} @${(c.which === "a" ? a : b) + 1}`;
    }
    for (const row of view.rows.values()) for (const cell of row.cells) want(cell, row.index);
    grid.dataset.step = String(a);  // set once the cells want the new step, so tests can wait on it
    updateStrips();
    for (const run of state.runs) {
      const entry = predictionsFor(run, a);
      const refresh = () => {
        for (const row of view.rows.values()) for (const group of row.groups) if (group.run === run && runs[run].imageSet.has(row.index)) showCaption(group, run, row.index);
      };
      if (entry.value) refresh();
      else entry.promise.then(() => { if (g === generation) refresh(); });
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
    for (const row of view.rows.values()) for (const cell of row.cells) if (cell.data && cell.td.dataset.state === "loaded") {
      paint(cell.canvas, cell.data.input, cell.data.map, state.settings);
    }
    if (hovered && hovered.data) hoverBar.replaceChildren(colorBar(hovered.data.map, state.settings));
    if (detail && detail.setSettings) detail.setSettings(state.settings);
    saveURL();
  });

  function showSettings() {
    const s = state.settings;
    polarity.value = s.polarity;
    clipLow.value = String(s.clip[0]);
    clipHigh.value = String(s.clip[1]);
    clipLowValue.textContent = `${s.clip[0]}%`;
    clipHighValue.textContent = `${s.clip[1]}%`;
    colormap.value = s.colormap;
    opacity.value = String(s.opacity);
    opacityValue.textContent = s.opacity.toFixed(2);
    mode.value = s.mode;
    sizeSlider.value = String(state.size);
    sizeValue.textContent = `${state.size}px`;
    document.documentElement.style.setProperty("--ki-size", `${state.size}px`);
    filterShow.value = state.filters.show;
    sortSelect.value = state.sort;
  }

  // ---- hover: the value under the cursor and the map's colour bar; click: the detail view ----
  let hovered = null;
  tbody.addEventListener("mousemove", (event) => {
    const td = event.target.closest && event.target.closest("td.cell");
    const cell = td && cellOf.get(td);
    if (!cell || !cell.data || td.dataset.state !== "loaded") { valueTip.style.display = "none"; return; }
    const box = cell.canvas.getBoundingClientRect(), { width: w, height: h } = cell.canvas;
    const scale = Math.min(box.width / w, box.height / h), dw = w * scale, dh = h * scale;  // object-fit: contain
    const u = (event.clientX - box.left - (box.width - dw) / 2) / dw, v = (event.clientY - box.top - (box.height - dh) / 2) / dh;
    if (u < 0 || v < 0 || u >= 1 || v >= 1) { valueTip.style.display = "none"; return; }
    const value = valueAt(cell.data.map, u, v);
    valueTip.textContent = `${formatValue(value)}${cell.data.map.exact ? "" : " (scaled 0-1)"}`;
    valueTip.dataset.value = String(value);
    Object.assign(valueTip.style, { display: "block", left: `${event.clientX + 12}px`, top: `${event.clientY + 12}px` });
    if (hovered !== cell || hoverBar.dataset.key !== cell.drawn.key) {
      hovered = cell;
      hoverBar.dataset.key = cell.drawn.key;
      hoverBar.replaceChildren(colorBar(cell.data.map, state.settings));
    }
  });
  tbody.addEventListener("mouseleave", () => { valueTip.style.display = "none"; });

  tbody.addEventListener("click", (event) => {
    const td = event.target.closest && event.target.closest("td.cell");
    const cell = td && cellOf.get(td);
    if (!cell || !cell.want.run) return;
    const { run, method, index, step } = cell.want;
    const info = runs[run];
    const caption = captionOf(run, index);
    if (detail) detail.close();
    detail = openDetail({
      title: `${run} · ${label(run, method)} · image ${index}`,
      caption: caption ? caption.text : "",
      runColor: colorOf(run),
      steps: [...info.methodSteps[method]].sort((x, y) => x - y),
      step,
      settings: { ...state.settings },
      loadInput: () => inputFor(run, index).promise.then((entry) => entry.value),
      loadMap: (s) => mapFor(run, method, index, s),
      pictures: (s) => Object.keys(info.pictures || {}).sort()
        .filter((kind) => info.pictures[kind].steps.includes(s))
        .map((kind) => ({
          title: info.pictures[kind].title,
          items: info.pictures[kind].indices.map((k) => ({
            label: (info.pictures[kind].labels || {})[String(k)] ?? String(k),
            url: imageURL(run, pictureTag(kind, k), s),
          })),
        })),
      onClose: () => { detail = null; },
    });
  });

  // ---- PNG of the grid as shown: the rows in view, their headers and captions ----
  async function downloadPNG() {
    const css = getComputedStyle(document.documentElement);
    const colour = (name) => css.getPropertyValue(name).trim() || "#000";
    const inView = [...view.rows.values()].filter((row) => {
      const r = row.tr.getBoundingClientRect();
      return r.bottom > TOOLBAR && r.top < window.innerHeight;
    }).sort((x, y) => x.tr.getBoundingClientRect().top - y.tr.getBoundingClientRect().top);
    const rows = inView.length ? inView : [...view.rows.values()];
    const size = state.size, inputWidth = Math.max(size, 140), gap = 8, captionH = CAPTION_LINES * LINE;
    const font = '12px Roboto, "Helvetica Neue", Arial, sans-serif';
    const widths = view.groups.map((g) => inputWidth + gap + g.columns.length * (size + gap));
    const width = Math.max(200, gap + widths.reduce((a, b) => a + b, 0));
    const headH = 48, rowH = size + captionH + 24, title = 24;
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = title + headH + rows.length * rowH + gap;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = colour("--ki-card");
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.textBaseline = "top";
    ctx.font = `500 14px Roboto, "Helvetica Neue", Arial, sans-serif`;
    ctx.fillStyle = colour("--ki-fg");
    ctx.fillText(`Explanations, epoch ${stepA() + 1}${state.compare ? ` vs ${stepB() + 1}` : ""}`, gap, 6);
    const fit = (text, w) => {
      if (ctx.measureText(text).width <= w) return text;
      while (text && ctx.measureText(`${text}…`).width > w) text = text.slice(0, -1);
      return `${text}…`;
    };
    const wrap = (text, w, lines) => {
      const out = [];
      let line = "";
      for (const word of text.split(" ")) {
        const next = line ? `${line} ${word}` : word;
        if (ctx.measureText(next).width > w && line) { out.push(line); line = word; } else line = next;
      }
      if (line) out.push(line);
      return out.length > lines ? [...out.slice(0, lines - 1), fit(out.slice(lines - 1).join(" "), w)] : out;
    };
    const drawFit = (source, sw, sh, x, y) => {
      if (!sw || !sh) return;
      const s = Math.min(size / sw, size / sh), dw = sw * s, dh = sh * s;
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(source, x + (size - dw) / 2, y + (size - dh) / 2, dw, dh);
    };
    let x = gap;
    view.groups.forEach((g, k) => {
      ctx.fillStyle = colorOf(g.run);
      ctx.fillRect(x, title, widths[k] - gap, 3);
      ctx.font = `500 13px Roboto, "Helvetica Neue", Arial, sans-serif`;
      ctx.fillStyle = colour("--ki-fg");
      ctx.fillText(fit(g.run, widths[k] - gap), x, title + 8);
      ctx.font = font;
      ctx.fillStyle = colour("--ki-muted");
      ctx.fillText("input", x, title + 28);
      g.columns.forEach((c, j) => ctx.fillText(fit(c.th.textContent, size), x + inputWidth + gap + j * (size + gap), title + 28));
      x += widths[k];
    });
    rows.forEach((row, r) => {
      const y = title + headH + r * rowH;
      let x0 = gap, cell = 0;
      view.groups.forEach((g, k) => {
        const group = row.groups[k];
        ctx.fillStyle = colour("--ki-bg");
        ctx.fillRect(x0, y, inputWidth, size);
        if (group.img.complete && group.img.naturalWidth) drawFit(group.img, group.img.naturalWidth, group.img.naturalHeight, x0 + (inputWidth - size) / 2, y);
        ctx.font = "11px Roboto, Arial, sans-serif";
        ctx.fillStyle = colour("--ki-muted");
        wrap(`image ${row.index}${group.caption.textContent ? ": " : ""}${group.caption.textContent}`, inputWidth, CAPTION_LINES)
          .forEach((line, l) => ctx.fillText(line, x0, y + size + 4 + l * LINE));
        g.columns.forEach((_, j) => {
          const c = row.cells[cell++], cx = x0 + inputWidth + gap + j * (size + gap);
          ctx.fillStyle = colour("--ki-bg");
          ctx.fillRect(cx, y, size, size);
          if (c.td.dataset.state === "loaded") drawFit(c.canvas, c.canvas.width, c.canvas.height, cx, y);
          else {
            ctx.fillStyle = colour("--ki-muted");
            ctx.fillText(c.td.dataset.state === "missing" ? NA : "…", cx + size / 2 - 8, y + size / 2 - 6);
          }
        });
        x0 += widths[k];
      });
    });
    const blob = await new Promise((done) => canvas.toBlob(done, "image/png"));
    const href = URL.createObjectURL(blob);
    const a = el("a", { href, download: `explanations_epoch_${stepA() + 1}.png` });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(href), 60_000);
    return { width: canvas.width, height: canvas.height, rows: rows.map((row) => row.index) };
  }

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
  clipLow.oninput = setting(() => {
    const v = Number(clipLow.value);
    state.settings.clip = [v, Math.max(v, state.settings.clip[1])];
  });
  clipHigh.oninput = setting(() => {
    const v = Number(clipHigh.value);
    state.settings.clip = [Math.min(v, state.settings.clip[0]), v];
  });
  sizeSlider.oninput = () => {
    const at = firstRowInView();
    state.size = Number(sizeSlider.value);
    showSettings();
    view.rowHeight = rowHeightEstimate();
    renderRows();
    if (at !== null) scrollToImage(at);
    scheduleRows();
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
  download.onclick = () => { downloadPNG().catch((error) => console.error(error)); };
  window.addEventListener("scroll", () => { scheduleRows(); saveURL(); }, { passive: true });
  // Back on this tab, TensorBoard writes a bare `#keras_interp`: put the view back into it.
  hostWindow().addEventListener("hashchange", saveURL);
  window.addEventListener("resize", scheduleRows);

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
