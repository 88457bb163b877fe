// The grid: one row per image, one column group per checked run (its input, then one column per
// method shown, and per compare epoch), virtual rows, and the value under the cursor.
//
// Drawing model: each grid cell wants one (run, method, image, step) map. A slider move only
// changes what the cells want; the cells that exist fetch what they lack. A cell paints an answer
// only if it still wants it (a stale request never overwrites a newer one), and in-flight requests
// a cell no longer wants are aborted. Decoded maps and inputs are kept in bounded caches (data.js),
// so settings changes recolour without a request and scrolling back costs nothing.
//
// Scale: the grid is virtual. Only the rows in the viewport (plus OVERSCAN rows) exist in the DOM;
// spacer rows above and below keep the scrollbar true. Rows have one fixed height, derived from the
// image size, so the rows in view follow from the scroll position alone. Requests per view do not
// grow with the run's size: the rows in view fetch their images and their block of /predictions
// (one request per run, step and 64 images), /runs and /scalars one per page.

import { colorBar, formatValue, paint, valueAt } from "./maps.js";
import { columnSettings } from "./state.js";
import { CAPTION_LINES, INDEX_LINE, LINE, PAD, TOOLBAR } from "./theme.js";
import { Missing, NA, el, failure, isNumber, oncePerFrame, percent, showState } from "./util.js";

const OVERSCAN = 4;          // rows kept beyond each edge of the viewport

// `runs`: /runs' answer; `state`: the view state (state.js); `store`: data.js's loaders; `label`:
// a method's name as its run logged it; `slider`/`sliderB`: the epoch sliders; `hoverBar`: where the
// hovered map's colour bar goes.
export function createGrid({ runs, state, store, label, slider, sliderB, hoverBar }) {
  const { inputs, maps, inputFor, mapFor, holdInput, releaseInput, mapKey, predictionsAt, qualityFor, trueLabel } = store;
  const grid = el("table", { id: "grid" });
  const thead = el("thead"), tbody = el("tbody");
  const topSpacer = el("tr", { className: "spacer" }, [el("td")]);
  const bottomSpacer = el("tr", { className: "spacer" }, [el("td")]);
  grid.append(thead, tbody);
  const gridCard = el("div", { className: "card grid-card" }, [grid]);
  const valueTip = el("div", { id: "value-tip" });

  // The view: column groups (one per checked run), the row order, the rows in the DOM.
  const view = {
    groups: [],       // [{run, columns: [{run, method, which}]}]
    images: [],       // the union of the checked runs' image indices
    order: [],        // image indices after filters and sort
    orderReady: false,
    rowHeight: 0,
    rows: new Map(),  // image index -> row in the DOM
    steps: [],        // the union of the checked runs' steps: the slider's positions
    generation: 0,    // bumped by every update(); late answers of older ones are dropped
  };
  const cellOf = new WeakMap();  // td -> cell

  const stepA = () => view.steps[Number(slider.value)];
  const stepB = () => view.steps[Number(sliderB.value)];

  function show(cell, status, step, why) {
    showState(cell.td, cell.canvas, cell.na, status, step, why);
  }

  // A column's settings: the view's, with its method's clip default and signedness (state.js).
  const settingsOf = (column) => columnSettings(runs, state, column.run, column.method);

  function draw(cell, input, map, step) {
    cell.data = { input, map };
    paint(cell.canvas, input, map, settingsOf(cell.column));
    show(cell, "loaded", step);
  }

  async function loadCell(cell) {
    const { key, run, method, index, step } = cell.want;
    if (cell.dead || key === null || (cell.drawn && cell.drawn.key === key) || (cell.pending && cell.pending.key === key)) return;
    if (cell.pending) cell.pending.controller.abort();
    const controller = new AbortController();
    cell.pending = { key, controller };
    try {
      const [input, map] = await Promise.all([
        inputFor(run, index).promise.then((entry) => entry.value),
        mapFor(run, method, index, step, controller.signal),
      ]);
      if (cell.dead || cell.want.key !== key) return;  // the cell moved on while this was in flight
      cell.drawn = { key, step, status: map ? "loaded" : "missing" };
      if (map) draw(cell, input, map, step);
      else show(cell, "missing", step);
    } catch (error) {
      if (error.name === "AbortError" || cell.dead || cell.want.key !== key) return;
      if (error instanceof Missing) {  // the input is not logged: nothing to draw on
        cell.drawn = { key, step, status: "missing" };
        show(cell, "missing", step);
      } else {
        // Not remembered as drawn: the next want (a slider move, the next poll) asks again.
        cell.drawn = null;
        show(cell, "error", step, failure(error));
      }
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
    if (cell.want.key === key && cell.td.dataset.state !== "error") return;
    cell.want = { key, run, method, index, step };
    showQuality(cell);
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
      request(cell);
    }
  }

  // The rows in view load first: a cell of a row kept beyond the viewport (OVERSCAN) waits until
  // no cell in view is loading, so its requests never queue before theirs (the browser runs six
  // at a time). The indices in view are worked out once per frame, from the scroll position.
  let inView = null, loadingInView = 0;
  const waiting = new Set();
  function indicesInView() {
    if (!inView) {
      const n = view.order.length, h = view.rowHeight || 1, top = tbody.getBoundingClientRect().top;
      const first = Math.max(0, Math.floor(-top / h)), last = Math.min(n, Math.ceil((window.innerHeight - top) / h));
      inView = new Set(view.order.slice(first, Math.max(first, last)));
      requestAnimationFrame(() => { inView = null; });
    }
    return inView;
  }
  function request(cell) {
    if (!indicesInView().has(cell.index)) {
      waiting.add(cell);
      if (!loadingInView) queueMicrotask(loadWaiting);
      return;
    }
    waiting.delete(cell);
    loadingInView += 1;
    loadCell(cell).finally(() => {
      loadingInView -= 1;
      if (!loadingInView) loadWaiting();
    });
  }
  function loadWaiting() {
    if (loadingInView) return;
    const cells = [...waiting];
    waiting.clear();
    for (const cell of cells) if (!cell.dead) loadCell(cell);
  }

  // The cell's tooltip: its image's quality measures for its method and epoch, where logged.
  function showQuality(cell) {
    const { key, run, method, index, step } = cell.want;
    const entry = qualityFor(run, step);
    if (!entry.value) {
      cell.td.title = "";
      entry.promise.then(() => { if (!cell.dead && cell.want.key === key) showQuality(cell); });
      return;
    }
    const measures = Object.entries(entry.value[method] || {}).filter(([, values]) => Array.isArray(values));
    const known = measures.some(([, values]) => isNumber(values[index]));
    cell.td.title = known ? measures.map(([name, values]) => `${name}: ${isNumber(values[index]) ? formatValue(values[index]) : NA}`).join("\n") : "";
  }

  // The caption of an image at a step (the chosen epoch by default), or null until /predictions answered.
  function captionOf(run, index, step = stepA()) {
    const info = runs[run], answer = predictionsAt(run, step, index).value;
    if (!answer) return null;
    const p = answer[String(index)];
    if (!p) return { text: "", correct: null };
    const name = (k) => (isNumber(k) ? (info.class_names && info.class_names[k] !== undefined ? info.class_names[k] : String(k)) : NA);
    let text = `predicted ${name(p.predicted)} (${percent(p.predicted_probability)})`;
    // The explained class only where it is another than the predicted one: said once otherwise.
    if (p.explained !== p.predicted) text += `, explaining ${name(p.explained)} (${percent(p.explained_probability)})`;
    const truth = trueLabel(run, index, answer);
    return { text, correct: isNumber(truth) && isNumber(p.predicted) ? truth === p.predicted : null };
  }

  // The caption of a row's group at the chosen epoch, once its predictions are in (the previous
  // epoch's stays until then; a row gone or an epoch moved on by then is left alone).
  function showCaption(group, run, index, row) {
    const step = stepA(), caption = captionOf(run, index, step);
    if (!caption) {
      predictionsAt(run, step, index).promise.then(() => {
        if (!row.dead && stepA() === step && predictionsAt(run, step, index).value) showCaption(group, run, index, row);
      });
      return;
    }
    group.caption.textContent = caption.text;
    group.caption.title = caption.text;
    group.caption.dataset.step = String(stepA());
    if (caption.correct === null) delete group.caption.dataset.correct;
    else group.caption.dataset.correct = caption.correct ? "1" : "0";
  }

  function makeRow(index) {
    const tr = el("tr", { className: "image-row", dataset: { index: String(index) } });
    const row = { index, tr, groups: [], cells: [], held: [], dead: false };
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
        holdInput(entry);  // its blob URL stays valid while this row may show it
        row.held.push(entry);
        const showInput = () => { img.src = entry.url; img.style.display = ""; };
        if (entry.url) showInput();
        else {
          entry.promise.then(() => { if (!row.dead) showInput(); }).catch((error) => {
            if (row.dead) return;
            na.style.display = "";
            if (!(error instanceof Missing)) Object.assign(na, { textContent: "error", title: failure(error) });
          });
        }
        showCaption(g, run, index, row);
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
    for (const entry of row.held) releaseInput(entry);
    row.held = [];
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

  // ---- the columns: one group per checked run, a column per method shown (and per compare epoch) ----
  function rowHeightEstimate() {
    return state.size + 4 + CAPTION_LINES * LINE + INDEX_LINE + 2 * PAD + 1;  // box, caption, index, padding, border
  }

  // The slider's positions: the union of the checked runs' steps (again when /runs brings new ones).
  function refreshSteps() {
    view.steps = [...new Set(state.runs.flatMap((r) => runs[r].steps))].sort((a, b) => a - b);
  }

  // Rows, header and spacers for the checked runs and shown methods; the rows in view come with
  // the next renderRows().
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
    refreshSteps();
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
  }

  // ---- hover: the value under the cursor and the map's colour bar ----
  let hovered = null;

  // Recolour the decoded maps in the DOM (settings changes): no request.
  function repaint() {
    for (const row of view.rows.values()) for (const cell of row.cells) if (cell.data && cell.td.dataset.state === "loaded") {
      paint(cell.canvas, cell.data.input, cell.data.map, settingsOf(cell.column));
    }
    if (hovered && hovered.data) hoverBar.replaceChildren(colorBar(hovered.data.map, settingsOf(hovered.column)));
  }

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
      hoverBar.replaceChildren(colorBar(cell.data.map, settingsOf(cell.column)));
    }
  });
  tbody.addEventListener("mouseleave", () => { valueTip.style.display = "none"; });

  return {
    view, card: gridCard, table: grid, valueTip, tbody, cellOf, stepA, stepB,
    want, captionOf, showCaption, settingsOf, refreshSteps, renderRows, scheduleRows, firstRowInView, scrollToImage, rowHeightEstimate, build, repaint,
  };
}
