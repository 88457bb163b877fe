// The controls: the left pane (runs, methods, image size, map settings with the hovered map's
// colour bar, filters, sort) and the toolbar (epoch sliders, compare, row count, PNG download).
// They only show the state; what a change does is wired by app.js.

import { SEQUENTIAL } from "./maps.js";
import { SORTS, ascending, qualitySorts } from "./state.js";
import { el, options } from "./util.js";

// `names`: the runs, sorted; `state`: the view state (state.js), read for the initial checks.
export function createControls(names, state) {
  const field = (text, control, value) => el("label", { className: "field" }, [el("span", { text }), control, ...(value ? [value] : [])]);  // a select spans the value's column
  const section = (title, children, id) => el("section", id ? { id: `${id}-section` } : {}, [el("h3", { text: title }), ...children]);

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
  const sizeFit = el("button", { id: "size-fit", type: "button", text: "fit to width",
    title: "the cells share the page's width (up to 320 px); moving the slider sets a size again" });
  const sizeValue = el("span", { className: "value" });
  const polarity = el("select", { id: "polarity" }, options([["auto", "auto"], ["positive", "positive"], ["negative", "negative"], ["both", "both (diverging)"]]));
  const clipLow = el("input", { id: "clip-low", type: "range", min: 0, max: 100, step: 0.1,
    title: "percentile of the map's magnitude below which nothing is drawn" });
  const clipHigh = el("input", { id: "clip-high", type: "range", min: 0, max: 100, step: 0.1,
    title: "percentile of the map's magnitude above which the colour saturates" });
  const clipLowValue = el("span", { className: "value" }), clipHighValue = el("span", { className: "value" });
  // While the user has not moved a handle each method uses its own default clip; the handles then
  // show the first column's, and this line says so. "reset" goes back to the per-method defaults.
  const clipMode = el("span", { id: "clip-mode" });
  const clipReset = el("button", { id: "clip-reset", type: "button", text: "reset", title: "each method's own default clip" });
  const clipLine = el("div", { className: "hint clip-line" }, [clipMode, clipReset]);
  const colormap = el("select", { id: "colormap" }, options(SEQUENTIAL.map((n) => [n, n])));
  // Says which columns polarity draws on the diverging red/blue scale instead of the colormap.
  const colormapNote = el("div", { className: "hint", id: "colormap-note" });
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
    section("Image size", [field("size", sizeSlider, sizeValue), el("div", { className: "hint" }, [sizeFit])], "size"),
    section("Map", [field("polarity", polarity), field("clip low", clipLow, clipLowValue), field("clip high", clipHigh, clipHighValue), clipLine,
      field("colormap", colormap), colormapNote, field("opacity", opacity, opacityValue), field("draw", mode), hoverBar], "map"),
    section("Filter", [field("true class", filterTrue), field("predicted", filterPred), field("show", filterShow), filterNote], "filter"),
    section("Sort", [field("by", sortSelect)], "sort"),
  ]);
  const toolbar = el("div", { className: "toolbar" }, [
    el("span", { className: "label", text: "epoch" }), slider, epochLabel,
    el("label", { className: "label", text: "compare " }, [compare]), sliderB, epochLabelB,
    rowCount, download,
  ]);

  // `perMethod`: the clip the handles show while each method uses its own (the first column's).
  function showSettings(perMethod) {
    const s = state.settings, clip = s.clip || perMethod || [0, 100];
    polarity.value = s.polarity;
    clipLow.value = String(clip[0]);
    clipHigh.value = String(clip[1]);
    clipLowValue.textContent = `${clip[0]}%`;
    clipHighValue.textContent = `${clip[1]}%`;
    clipLine.dataset.mode = s.clip ? "global" : "per-method";
    clipMode.textContent = s.clip ? "clip: all methods " : "clip: per method (each its default) ";
    clipReset.disabled = !s.clip;
    colormap.value = s.colormap;
    opacity.value = String(s.opacity);
    opacityValue.textContent = s.opacity.toFixed(2);
    mode.value = s.mode;
    sizeSlider.value = String(state.size);
    sizeValue.textContent = `${state.size}px${state.sizeAuto ? " (fit)" : ""}`;
    document.documentElement.style.setProperty("--ki-size", `${state.size}px`);
    filterShow.value = state.filters.show;
    sortSelect.value = state.sort;
    compare.checked = state.compare;
    for (const { name, box } of runBoxes) box.checked = state.runs.includes(name);
  }

  // The methods of the checked runs, on/off; onToggle() after a change of state.hidden.
  function listMethods(runs, label, onToggle) {
    const methods = [...new Set(state.runs.flatMap((r) => runs[r].methods))].sort();
    methodList.replaceChildren(...methods.map((m) => {
      const box = el("input", { type: "checkbox", checked: !state.hidden.has(m), dataset: { method: m } });
      box.onchange = () => {
        if (box.checked) state.hidden.delete(m);
        else state.hidden.add(m);
        onToggle();
      };
      const run = state.runs.find((r) => runs[r].methods.includes(m));
      return el("label", { className: "row", title: m }, [box, el("span", { className: "run-name", text: label(run, m) })]);
    }));
    if (!methods.length) methodList.replaceChildren(el("div", { className: "hint", text: "no maps logged" }));
  }

  // The sorts: the fixed ones, then one per quality measure of each method the checked runs logged
  // (best first). A sort no checked run offers any more falls back to the image index.
  function listSorts(runs, label) {
    const pairs = [...Object.entries(SORTS).map(([value, text]) => [value, text, ""]),
      ...qualitySorts(runs, state.runs).map(([value, method, measure]) => {
        const run = state.runs.find((r) => (runs[r].quality || {})[method]);
        return [value, `${label(run, method)}: ${measure}`, ascending(measure) ? "lowest first" : "highest first"];
      })];
    const same = sortSelect.options.length === pairs.length
      && pairs.every(([v, t], k) => sortSelect.options[k].value === v && sortSelect.options[k].text === t);
    if (!same) sortSelect.replaceChildren(...pairs.map(([value, text, title]) => el("option", { value, text, title })));
    if (!pairs.some(([v]) => v === state.sort)) state.sort = "index";
    sortSelect.value = state.sort;
  }

  // `diverging`: the labels of the shown columns drawn red (+) / blue (-), which the colormap
  // does not colour; `all`: whether that is every shown column.
  function showColormapUse(diverging, all) {
    colormap.dataset.overridden = all ? "all" : diverging.length ? "some" : "none";
    colormap.title = all ? "every shown map is signed: drawn red (+) / blue (-); polarity \"positive\" uses this colormap" : "";
    colormapNote.textContent = !diverging.length ? "" : all
      ? "all shown maps are signed: drawn red (+) / blue (-), not with the colormap (polarity \"positive\" uses it)"
      : `red (+) / blue (-), not the colormap: ${diverging.join(", ")}`;
  }

  return {
    showColormapUse, colormapNote,
    sidebar, toolbar, runBoxes, methodList, sizeSlider, sizeFit, polarity, clipLow, clipHigh, clipReset, colormap, opacity, mode, hoverBar,
    filterTrue, filterPred, filterShow, sortSelect, filterNote, slider, sliderB, epochLabel, epochLabelB, compare, rowCount,
    download, showSettings, listMethods, listSorts,
  };
}
