// The view state (runs, epochs, methods shown, filters, sort, map settings, image size, the first
// row in view) and its encoding in the URL.
//
// The view is one parameter, `ki`, in TensorBoard's own URL hash: TensorBoard parses its hash as
// `#<tab>&key=value&...` and keeps keys it does not know, so `<tensorboard>/#keras_interp&ki=...`
// opens this tab with this view (tried with TensorBoard 2.21: the hash survives a reload and a new
// tab). It is written with history.replaceState on the (same-origin) parent: no hashchange event,
// no history entry per slider move, and TensorBoard does not reload the tab. Opened on its own
// (no TensorBoard parent), the page keeps the state in its own hash.

import { DEFAULT_SETTINGS, SEQUENTIAL } from "./maps.js";
import { isNumber } from "./util.js";

export const SORTS = { index: "image index", "conf-desc": "confidence, high first", "conf-asc": "confidence, low first",
  "expl-desc": "explained probability, high first", "expl-asc": "explained probability, low first" };

// Sorts by a quality measure of one method's maps (/runs' `quality`), named `quality/<method>/<measure>`:
// a method has no "/" (it is one segment of its tags), so the measure is the rest.
export const qualitySort = (method, measure) => `quality/${method}/${measure}`;
export function parseQualitySort(sort) {
  const match = /^quality\/([^/]+)\/(.+)$/.exec(sort || "");
  return match ? { method: match[1], measure: match[2] } : null;
}
// Best first: a lower deletion AUC or ROAD with the most relevant pixels removed first is the
// more faithful map; higher is better for the pointing game, the energy share, the insertion AUC
// and ROAD removing the least relevant first (and, by default, for measures added later).
export const ascending = (measure) => measure === "deletion_auc" || measure === "road_morf";
// The quality sorts the checked runs offer: [[sort, method, measure]], methods sorted, measures in
// the order they were logged.
export function qualitySorts(runs, checked) {
  const seen = new Map();
  for (const run of checked) {
    for (const [method, measures] of Object.entries(runs[run].quality || {})) {
      for (const measure of measures) seen.set(qualitySort(method, measure), [method, measure]);
    }
  }
  return [...seen].map(([sort, [method, measure]]) => [sort, method, measure])
    .sort((a, b) => (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
}

// The settings one column's maps are drawn with: the view's, with the clip of the method's own
// default while the user has not set one (state.settings.clip null: "per method"; /runs' `clip`,
// e.g. [0, 99.9] for CAM and occlusion maps whose coarse regions a 62% cut would mostly hide), and
// whether the method declared its maps signed (/runs' `signed`: true, false or null = unknown),
// which "auto" polarity follows.
export function methodClip(runs, run, method) {
  const clip = ((runs[run] || {}).clip || {})[method];
  return Array.isArray(clip) && clip.length === 2 && clip.every((v) => isNumber(v)) ? [...clip] : [...DEFAULT_SETTINGS.clip];
}
export function columnSettings(runs, state, run, method) {
  const signed = ((runs[run] || {}).signed || {})[method];
  return { ...state.settings, clip: state.settings.clip ? [...state.settings.clip] : methodClip(runs, run, method),
    signed: typeof signed === "boolean" ? signed : null };
}

export function hostWindow() {
  try {
    if (window.parent !== window && window.parent.location.href) return window.parent;
  } catch { /* cross-origin parent */ }
  return window;
}

function hashParts(hash) {
  return hash.replace(/^#/, "").split("&").filter(Boolean);
}

// The `ki` value this page last wrote into the URL: a hash change that brings another one is a
// link pasted into this tab, to be applied rather than overwritten.
let lastWritten = null;

// The `ki` value in TensorBoard's URL now, if any (encoded as it stands in the hash).
export function urlValue() {
  const part = hashParts(hostWindow().location.hash).find((p) => p.startsWith("ki="));
  return part ? part.slice(3) : null;
}
export const linkedElsewhere = () => { const v = urlValue(); return v !== null && v !== lastWritten; };

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
  lastWritten = value ? encodeURIComponent(value) : null;
  if (value) parts.push(`ki=${lastWritten}`);
  const url = new URL(host.location.href);
  url.hash = parts.join("&");
  if (url.href !== host.location.href) host.history.replaceState(host.history.state, "", url.href);
}

// The state a link asks for, each value checked against what exists (`runs`: /runs' answer).
export function readState(runs, names) {
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
    sort: url.get("sort") || "index",  // checked below, against the chosen runs' quality measures
    settings: {
      polarity: pick(url.get("pol"), ["auto", "positive", "negative", "both"], DEFAULT_SETTINGS.polarity),
      // null: each method's own default; a link with lo or hi sets one clip for all columns.
      clip: url.has("lo") || url.has("hi") ? [num("lo", DEFAULT_SETTINGS.clip[0], 0, 100), num("hi", DEFAULT_SETTINGS.clip[1], 0, 100)] : null,
      colormap: pick(url.get("cmap"), SEQUENTIAL, DEFAULT_SETTINGS.colormap),
      opacity: num("op", DEFAULT_SETTINGS.opacity, 0, 1),
      mode: pick(url.get("mode"), ["heat", "outline"], DEFAULT_SETTINGS.mode),
    },
    size: num("size", 128, 64, 320),
    // The cells share the page's width ("fit", the default) until a size is chosen.
    sizeAuto: !url.has("size") || url.get("size") === "fit",
    at: url.has("at") ? num("at", null) : null,
    scalarsOpen: url.get("scalars") !== "0",
  };
  if (!state.runs.length) state.runs = [...names];  // every run shown, as TensorBoard's other dashboards
  if (!Object.hasOwn(SORTS, state.sort) && !qualitySorts(runs, state.runs).some(([sort]) => sort === state.sort)) state.sort = "index";
  if (state.settings.clip && state.settings.clip[0] > state.settings.clip[1]) state.settings.clip.reverse();
  return state;
}

// The URL parameters of a state; defaults are left out so links stay short. `at`: the image to
// scroll to, null when the grid is at its top. `last`: the last logged step: a view at the last
// epoch does not pin it, so the link follows the training as it goes on.
export function urlParams(state, at, last = null) {
  const p = new URLSearchParams();
  for (const r of state.runs) p.append("run", r);
  if (isNumber(state.step) && state.step !== last) p.set("step", String(state.step));
  if (state.compare && isNumber(state.stepB)) p.set("cmp", String(state.stepB));
  for (const m of [...state.hidden].sort()) p.append("hide", m);
  if (state.filters.true !== "") p.set("true", state.filters.true);
  if (state.filters.pred !== "") p.set("pred", state.filters.pred);
  if (state.filters.show !== "all") p.set("show", state.filters.show);
  if (state.sort !== "index") p.set("sort", state.sort);
  const s = state.settings, d = DEFAULT_SETTINGS;
  if (s.polarity !== d.polarity) p.set("pol", s.polarity);
  if (s.clip) {  // set by the user: one clip for all columns, both ends
    p.set("lo", String(s.clip[0]));
    p.set("hi", String(s.clip[1]));
  }
  if (s.colormap !== d.colormap) p.set("cmap", s.colormap);
  if (s.opacity !== d.opacity) p.set("op", String(s.opacity));
  if (s.mode !== d.mode) p.set("mode", s.mode);
  if (!state.sizeAuto) p.set("size", String(state.size));  // fit to width is the default
  if (at !== null) p.set("at", String(at));
  if (state.scalarsOpen === false) p.set("scalars", "0");
  return p;
}

// A debounced writer of params() into the URL (a slider drag is one write, not one per step).
export function urlSaver(params) {
  let urlTimer = 0;
  return () => {
    clearTimeout(urlTimer);
    urlTimer = setTimeout(() => {
      try { writeURLState(params()); } catch (error) { console.error(error); }
    }, 150);
  };
}
