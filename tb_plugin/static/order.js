// The row order: the filters (true class, predicted class, correct or wrong) and the sort
// (confidence, explained probability, a quality measure of one method's maps) of the grid's rows,
// from the first checked run's predictions and quality at the chosen epoch. The previous order
// stays until that epoch's answers arrive.

import { ascending, parseQualitySort } from "./state.js";
import { isNumber, options } from "./util.js";

// `grid`: grid.js's grid (its view, rows and scrolling); `controls`: controls.js's filter selects
// and row count.
export function createOrder({ runs, state, store, grid, controls }) {
  const { view, table, stepA, renderRows, scheduleRows, scrollToImage } = grid;
  const { predictionsFor, predictionsKnown, qualityFor, trueLabel } = store;
  const { filterTrue, filterPred, rowCount, filterNote } = controls;

  function classOptions(select, run, current) {
    const info = runs[run], values = new Set();
    (info.class_names || []).forEach((_, k) => values.add(k));
    for (const v of Object.values(info.image_labels || {})) if (isNumber(v)) values.add(v);
    // The predicted classes too: from the whole run's predictions when a sort or filter asked for
    // them, or asked for here when nothing else names a class (no class names, no labels).
    const answer = values.size ? predictionsKnown(run, stepA()) : predictionsFor(run, stepA()).value;
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
    const byQuality = parseQualitySort(state.sort);
    const needsPredictions = primary !== null
      && (f.pred !== "" || f.show !== "all" || (state.sort !== "index" && !byQuality) || (f.true !== "" && !info.image_labels));
    const needsQuality = primary !== null && byQuality !== null;
    const needs = needsPredictions || needsQuality;
    const step = stepA();
    const entries = [needsPredictions ? predictionsFor(primary, step) : null, needsQuality ? qualityFor(primary, step) : null];
    const waiting = entries.filter((entry) => entry && !entry.value);
    if (waiting.length) {
      const g = view.generation;
      Promise.all(waiting.map((entry) => entry.promise)).then(() => { if (g === view.generation) applyOrder(); });
      return false;  // the previous order stays until this epoch's answers arrive
    }
    const [answer, quality] = entries.map((entry) => (entry ? entry.value : null));
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
      let value, sign;
      if (byQuality) {
        const values = ((quality || {})[byQuality.method] || {})[byQuality.measure] || [];
        value = (i) => values[i];
        sign = ascending(byQuality.measure) ? 1 : -1;
      } else {
        const field = state.sort.startsWith("conf") ? "predicted_probability" : "explained_probability";
        value = (i) => p(i)[field];
        sign = state.sort.endsWith("asc") ? 1 : -1;
      }
      indices = [...indices].sort((x, y) => {
        const a = value(x), b = value(y);
        if (!isNumber(a) || !isNumber(b)) return (isNumber(a) ? -1 : 0) + (isNumber(b) ? 1 : 0) || x - y;  // unknown last
        return sign * (a - b) || x - y;
      });
    }
    view.order = indices;
    view.orderReady = true;
    table.dataset.rows = String(indices.length);
    table.dataset.orderStep = needs ? String(step) : "";
    rowCount.textContent = `${indices.length} of ${view.images.length} images`;
    filterNote.textContent = view.groups.length > 1 ? `Filters and sort use ${primary}'s ${byQuality ? "predictions and quality" : "predictions"}.` : "";
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

  return { applyOrder };
}
