// The dashboard's look: TensorBoard's cards, pane and typography in both of its themes, as one
// stylesheet injected from JS (no external assets under TensorBoard's CSP) with CSS variables
// (--ki-*) the other modules and the PNG download read; the theme follows TensorBoard's; runs get
// TensorBoard's own run colours.

import { el, whileShown } from "./util.js";

// Layout in pixels, shared with the grid (fixed row heights for the virtual rows) and the PNG.
export const CAPTION_LINES = 3, LINE = 14, INDEX_LINE = 15, PAD = 4, TOOLBAR = 48;

// TensorBoard 2.21's default run palette (webfiles.zip: settings' colorPalette "default"), in the
// order it hands colours to runs: the i-th run of /data/runs gets colors[i % 7].
const PALETTE = [["#425066", "#8e98a3"], ["#12b5cb", "#12b5cb"], ["#e52592", "#e52592"], ["#f9ab00", "#f9ab00"],
  ["#9334e6", "#9334e6"], ["#7cb342", "#7cb342"], ["#e8710a", "#e8710a"]];

const STYLE = `
:root { --ki-bg: #f5f6f7; --ki-fg: #212121; --ki-card: #ffffff; --ki-border: #ebebeb; --ki-muted: #616161;
  --ki-shadow: 0 1px 3px rgba(0,0,0,.12), 0 1px 2px rgba(0,0,0,.08); --ki-accent: #f57c00; --ki-hover: #f1f3f4;
  --ki-size: 128px; color-scheme: light; }
:root[data-theme="dark"] { --ki-bg: #303030; --ki-fg: #e8e8e8; --ki-card: #3a3a3a; --ki-border: #555555;
  --ki-muted: #a0a0a0; --ki-shadow: 0 1px 3px rgba(0,0,0,.5); --ki-accent: #ef8d32; --ki-hover: #454545; color-scheme: dark; }
html, body { margin: 0; background: var(--ki-bg); color: var(--ki-fg); overflow-anchor: none; }
body { font: 13px/1.4 Roboto, "Helvetica Neue", Arial, sans-serif; }
html { scrollbar-gutter: stable; }  /* the page's width stays put as rows come and go: "fit" keeps fitting */
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
#grid tr.columns th { color: var(--ki-muted); border-bottom: 1px solid var(--ki-border); max-width: var(--ki-size); overflow: hidden;
  white-space: normal; overflow-wrap: anywhere; vertical-align: bottom; }
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
#charts-details > summary { cursor: pointer; user-select: none; }
#charts-details:not([open]) > summary { padding-bottom: 10px; }
.clip-line { display: flex; align-items: center; justify-content: space-between; gap: 6px; margin: 0 0 4px; }
.clip-line button { padding: 0 6px; font-size: 11px; }
.clip-line button:disabled { opacity: 0.5; cursor: default; }
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
  if (body) {
    whileShown(() => {
      const observer = new MutationObserver(apply);
      observer.observe(body, { attributes: true, attributeFilter: ["class"] });
      apply();  // the theme may have changed while the page was in the bfcache
      return () => observer.disconnect();
    });
  }
  media.addEventListener("change", apply);
  apply();
}

export function injectStyle() {
  document.head.appendChild(el("style", { id: "ki-style", text: STYLE }));
}

// Run colours: `order` is TensorBoard's own run list (/data/runs), `names` this plugin's runs.
// Every run of TensorBoard counts (e.g. the train/ and validation/ runs of keras.callbacks.TensorBoard).
// Elements of class run-colored with data-run get --run; followTheme() switches the palette's column.
export function runColours(order, names) {
  const known = Array.isArray(order) ? order : [];
  const colourOrder = [...known, ...names.filter((n) => !known.includes(n))];
  let dark = false;
  const colorOf = (run) => PALETTE[Math.max(0, colourOrder.indexOf(run)) % PALETTE.length][dark ? 1 : 0];
  function refresh() {
    for (const node of document.querySelectorAll(".run-colored")) node.style.setProperty("--run", colorOf(node.dataset.run));
  }
  const followTheme = () => watchTheme((isDark) => { dark = isDark; refresh(); });
  return { colorOf, refresh, followTheme };
}
