// Explanations dashboard for keras_interp. An ES module loaded by TensorBoard in an iframe:
// no inline scripts, no external assets, and every URL relative to this module, so the page
// works behind --path_prefix. Names from the logs are only ever set as textContent.
//
// Drawing model: each grid cell wants one (method, step) map. A slider move only changes what
// the cells want; rows in view then fetch what they lack (rows out of view wait until scrolled
// in). A cell paints a response only if it still wants that map, so a stale request never
// overwrites a newer one, and in-flight requests a cell no longer wants are aborted. Each cell
// keeps its decoded input and map pixels, so opacity and colormap changes recolour without
// fetching anything. Picture strips (one per kind of runs[run].pictures, e.g. class models, and a
// second one at the compare epoch) follow the same model: each strip image wants one (kind, index,
// step) picture, loads when in view, and paints only the answer it still wants.

const base = (path) => new URL(path, import.meta.url).toString();
const NA = "n/a";

async function getJSON(path, params) {
  const url = new URL(base(path));
  for (const [k, v] of Object.entries(params || {})) url.searchParams.set(k, v);
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

function imageURL(run, tag, step) {
  const url = new URL(base("./image"));
  url.searchParams.set("run", run);
  url.searchParams.set("tag", tag);
  url.searchParams.set("step", String(step));
  return url.toString();
}

async function fetchBlob(url, signal) {
  const response = await fetch(url, { signal });
  if (!response.ok) throw new Error(`image: ${response.status}`);
  return response.blob();
}

const pad = (i) => String(i).padStart(3, "0");  // 7 -> "007", 1000 -> "1000", as summary.py writes
const inputTag = (i) => `keras_interp/input/${pad(i)}`;
const mapTag = (method, i) => `keras_interp/map/${method}/${pad(i)}`;
const pictureTag = (kind, i) => `keras_interp/${kind}/${pad(i)}`;  // kinds come from /runs
const PICTURE_SIZE = "96px";
const isNumber = (v) => typeof v === "number" && Number.isFinite(v);
const percent = (p) => (isNumber(p) ? `${(100 * p).toFixed(1)}%` : NA);

const COLORMAPS = {
  jet: (t) => [1.5 - Math.abs(4 * t - 3), 1.5 - Math.abs(4 * t - 2), 1.5 - Math.abs(4 * t - 1)],
  inferno: (t) => [Math.min(1, 1.6 * t), Math.max(0, 1.4 * t - 0.35) ** 1.2, Math.max(0, 0.55 - Math.abs(t - 0.35)) + Math.max(0, t - 0.85) * 3],
  grey: (t) => [t, t, t],
};
// 256-entry RGB lookup tables, built once.
const LUTS = Object.fromEntries(Object.entries(COLORMAPS).map(([name, f]) => {
  const lut = new Uint8ClampedArray(256 * 3);
  for (let v = 0; v < 256; v++) {
    const c = f(v / 255);
    for (let k = 0; k < 3; k++) lut[3 * v + k] = Math.round(255 * Math.max(0, Math.min(1, c[k])));
  }
  return [name, lut];
}));

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "style") Object.assign(node.style, v);
    else if (k === "text") node.textContent = v;
    else node[k] = v;
  }
  for (const child of children) node.appendChild(child);
  return node;
}

// RGBA pixels of a decoded image, scaled to w x h.
const scratch = document.createElement("canvas");
function pixelsOf(source, w, h) {
  scratch.width = w;
  scratch.height = h;
  const ctx = scratch.getContext("2d", { willReadFrequently: true });
  ctx.imageSmoothingEnabled = true;
  ctx.clearRect(0, 0, w, h);
  ctx.drawImage(source, 0, 0, w, h);
  return ctx.getImageData(0, 0, w, h).data;
}

// The input with the map coloured over it, from pixels kept in memory.
function paint(canvas, input, values, opacity, colormap) {
  const { width: w, height: h, pixels } = input;
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  const ctx = canvas.getContext("2d");
  const out = ctx.createImageData(w, h);
  const data = out.data, lut = LUTS[colormap] || LUTS.jet, a = opacity, b = 1 - opacity;
  for (let p = 0, o = 0; p < w * h; p++, o += 4) {
    const v = 3 * values[p];
    data[o] = b * pixels[o] + a * lut[v];
    data[o + 1] = b * pixels[o + 1] + a * lut[v + 1];
    data[o + 2] = b * pixels[o + 2] + a * lut[v + 2];
    data[o + 3] = 255;
  }
  ctx.putImageData(out, 0, 0);
}

function sparkline(title, points) {
  const width = 180, height = 48;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  const finite = points.filter((p) => isNumber(p[0]) && isNumber(p[1]));  // null = not a number
  const steps = finite.map((p) => p[0]), values = finite.map((p) => p[1]);
  if (finite.length) {
    const [s0, s1] = [Math.min(...steps), Math.max(...steps)];
    const [v0, v1] = [Math.min(0, ...values), Math.max(1, ...values)];
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", "#f57c00");
    line.setAttribute("stroke-width", "2");
    line.setAttribute("points", finite.map(([s, v]) =>
      `${((s - s0) / Math.max(1, s1 - s0)) * (width - 4) + 2},${height - 2 - ((v - v0) / (v1 - v0)) * (height - 4)}`).join(" "));
    svg.appendChild(line);
  }
  const lastPoint = points.length ? points[points.length - 1][1] : null;
  const last = isNumber(lastPoint) ? lastPoint.toFixed(3) : NA;
  return el("div", { className: "chart", style: { display: "inline-block", margin: "4px 12px 4px 0" } }, [
    el("div", { text: `${title}: ${last}`, style: { fontSize: "12px" } }),
    svg,
  ]);
}

export async function render() {
  document.body.style.fontFamily = "Roboto, sans-serif";
  document.body.style.margin = "12px";
  const { runs } = await getJSON("./runs");
  const names = Object.keys(runs).sort();
  if (!names.length) {
    document.body.appendChild(el("p", { text: "No explanations logged yet: add keras_interp.ExplanationLogger to model.fit." }));
    return;
  }
  const state = { run: names[0], index: 0, compare: false, indexB: 0, opacity: 0.5, colormap: "jet" };
  const runSelect = el("select", { id: "run" }, names.map((n) => el("option", { value: n, text: n })));
  const slider = el("input", { id: "epoch", type: "range", min: 0, step: 1 });
  const sliderB = el("input", { id: "epoch-b", type: "range", min: 0, step: 1 });
  const epochLabel = el("span", { id: "epoch-label" });
  const epochLabelB = el("span", { id: "epoch-b-label" });
  const compare = el("input", { id: "compare", type: "checkbox" });
  const opacity = el("input", { id: "opacity", type: "range", min: 0, max: 1, step: 0.05, value: 0.5 });
  const colormap = el("select", { id: "colormap" }, Object.keys(COLORMAPS).map((n) => el("option", { value: n, text: n })));
  const charts = el("div", { id: "charts" });
  const strips = el("div", { id: "pictures" });
  const grid = el("table", { id: "grid", style: { borderCollapse: "collapse" } });
  const controls = el("div", { style: { marginBottom: "8px", lineHeight: "2em" } }, [
    el("label", { text: "run " }), runSelect, el("span", { text: "  epoch " }), slider, epochLabel,
    el("label", { text: "  compare with " }), compare, sliderB, epochLabelB,
    el("span", { text: "  opacity " }), opacity, el("span", { text: "  colormap " }), colormap,
  ]);
  document.body.append(controls, charts, strips, grid);

  const inputs = new Map();       // run + index -> Promise of {url, width, height, pixels}
  const predictions = new Map();  // run + step -> Promise of the /predictions answer
  const scalars = new Map();      // run -> Promise of the /scalars answer
  let layout = null;              // {run, columns, headers, rows, strips, observer, visible, visiblePictures}
  let generation = 0;             // bumped by every update(); late answers of older ones are dropped

  function inputFor(run, i) {
    const key = `${run}\n${i}`;
    if (!inputs.has(key)) {
      const promise = (async () => {
        const blob = await fetchBlob(imageURL(run, inputTag(i), runs[run].steps[0] ?? 0));
        const bitmap = await createImageBitmap(blob);
        const entry = { url: URL.createObjectURL(blob), width: bitmap.width, height: bitmap.height };
        entry.pixels = pixelsOf(bitmap, entry.width, entry.height);
        bitmap.close();
        return entry;
      })();
      promise.catch(() => inputs.delete(key));  // a failed load may be retried
      inputs.set(key, promise);
    }
    return inputs.get(key);
  }

  function cached(map, key, load) {
    if (!map.has(key)) {
      const promise = load();
      promise.catch(() => map.delete(key));
      map.set(key, promise);
    }
    return map.get(key);
  }

  // A grid cell or strip picture shows "loaded", "loading" (the previous picture dimmed) or
  // "missing" (n/a): `box` carries the state, `picture` the drawn step, `na` the n/a text.
  function showState(box, picture, na, status, step) {
    box.dataset.state = status;
    picture.dataset.loaded = status === "loaded" ? "1" : "0";
    if (status === "loaded") picture.dataset.step = String(step);
    picture.style.display = status === "missing" ? "none" : "";
    picture.style.opacity = status === "loading" ? "0.4" : "1";
    na.style.display = status === "missing" ? "" : "none";
  }

  function show(cell, status, step) {
    showState(cell.td, cell.canvas, cell.na, status, step);
  }

  async function loadCell(row, cell) {
    const { key, method, step } = cell.want;
    if ((cell.drawn && cell.drawn.key === key) || (cell.pending && cell.pending.key === key)) return;
    if (cell.pending) cell.pending.controller.abort();
    const controller = new AbortController();
    cell.pending = { key, controller };
    try {
      const [input, blob] = await Promise.all([
        inputFor(layout.run, row.index),
        fetchBlob(imageURL(layout.run, mapTag(method, row.index), step), controller.signal),
      ]);
      const bitmap = await createImageBitmap(blob);
      if (cell.want.key !== key) return;  // the cell moved on while this was in flight
      const rgba = pixelsOf(bitmap, input.width, input.height);
      bitmap.close();
      const values = new Uint8Array(input.width * input.height);
      for (let p = 0; p < values.length; p++) values[p] = rgba[4 * p];
      cell.data = { input, values };
      cell.drawn = { key, status: "loaded", step };
      paint(cell.canvas, input, values, state.opacity, state.colormap);
      show(cell, "loaded", step);
    } catch (error) {
      if (error.name === "AbortError" || cell.want.key !== key) return;
      cell.drawn = { key, status: "missing", step };  // e.g. no map of this image at this step
      show(cell, "missing", step);
    } finally {
      if (cell.pending && cell.pending.key === key) cell.pending = null;
    }
  }

  function loadRow(row) {
    if (!row.inputShown) {
      row.inputShown = true;
      inputFor(layout.run, row.index)
        .then((entry) => { row.img.src = entry.url; row.img.style.minHeight = ""; })
        .catch((error) => { row.inputShown = false; console.error(error); });
    }
    for (const cell of row.cells) loadCell(row, cell);
  }

  function showPicture(item, status, step) {
    showState(item.figure, item.img, item.na, status, step);
  }

  async function loadPicture(item) {
    const { key, step } = item.want;
    if (key === null || (item.drawn && item.drawn.key === key) || (item.pending && item.pending.key === key)) return;
    if (item.pending) item.pending.controller.abort();
    const controller = new AbortController();
    item.pending = { key, controller };
    try {
      const blob = await fetchBlob(imageURL(layout.run, pictureTag(item.kind, item.index), step), controller.signal);
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
      item.drawn = { key, status: "loaded", step };
      showPicture(item, "loaded", step);
    } catch (error) {
      if (error.name === "AbortError" || item.dead || item.want.key !== key) return;
      item.drawn = { key, status: "missing", step };  // e.g. no picture of this class at this step
      showPicture(item, "missing", step);
    } finally {
      if (item.pending && item.pending.key === key) item.pending = null;
    }
  }

  // fn at most once per animation frame, however many events asked for it in between.
  function oncePerFrame(fn) {
    let scheduled = false;
    return () => {
      if (scheduled) return;
      scheduled = true;
      requestAnimationFrame(() => { scheduled = false; fn(); });
    };
  }

  // Load the rows and strip pictures in view.
  const scheduleLoad = oncePerFrame(() => {
    if (!layout) return;
    for (const row of layout.visible) loadRow(row);
    for (const item of layout.visiblePictures) loadPicture(item);
  });

  // Re-colour the decoded maps (opacity, colormap) without fetching anything.
  const schedulePaint = oncePerFrame(() => {
    if (!layout) return;
    for (const row of layout.rows) {
      for (const cell of row.cells) {
        if (cell.data) paint(cell.canvas, cell.data.input, cell.data.values, state.opacity, state.colormap);
      }
    }
  });

  // Rebuild the grid: on a new run or when the compare columns come or go.
  function build() {
    if (layout) {
      layout.observer.disconnect();
      for (const row of layout.rows) for (const cell of row.cells) if (cell.pending) cell.pending.controller.abort();
      for (const strip of layout.strips) {
        for (const item of strip.items) {
          item.dead = true;
          if (item.pending) item.pending.controller.abort();
          if (item.url) URL.revokeObjectURL(item.url);
        }
      }
    }
    const run = state.run, info = runs[run];
    const columns = [];
    for (const method of info.methods) {
      columns.push({ method, which: "a" });
      if (state.compare) columns.push({ method, which: "b" });
    }
    const headers = columns.map((c) => el("th", { title: c.method, style: { padding: "0 6px" } }));
    const rows = info.images.map((i) => {
      const img = el("img", { className: "input", alt: `input ${i}`, style: { width: "128px", minHeight: "128px", imageRendering: "pixelated" } });
      const caption = el("div", { className: "caption", style: { fontSize: "11px", maxWidth: "140px" } });
      const cells = columns.map((column) => {
        // 1x1 until painted: a square placeholder, so rows have their final height before any image
        // arrives and only the rows really in view start loading.
        const canvas = el("canvas", { className: "overlay", width: 1, height: 1, style: { width: "128px", imageRendering: "pixelated" } });
        const na = el("div", { className: "na", text: NA, style: { width: "128px", textAlign: "center", color: "#888", display: "none" } });
        const td = el("td", { className: "cell" }, [canvas, na]);
        return { column, td, canvas, na, want: { key: null }, drawn: null, pending: null, data: null };
      });
      const tr = el("tr", { className: "image-row" }, [el("td", {}, [img, caption]), ...cells.map((c) => c.td)]);
      tr.dataset.index = String(i);
      return { index: i, tr, img, caption, cells, inputShown: false };
    });
    grid.replaceChildren(el("tr", {}, [el("th", { text: "input" }), ...headers]), ...rows.map((r) => r.tr));
    grid.style.display = info.images.length ? "" : "none";  // a run may log pictures only
    // One strip per picture kind (and one at the compare epoch under it): a row of pictures, each
    // captioned with its label (e.g. the class name). Kinds, titles and labels come from /runs.
    const pictures = info.pictures || {};
    const stripList = [];
    for (const kind of Object.keys(pictures).sort()) {
      for (const which of state.compare ? ["a", "b"] : ["a"]) {
        const title = el("div", { className: "strip-title", style: { fontSize: "13px", fontWeight: "bold", margin: "4px 0" } });
        const note = el("div", { className: "strip-missing", style: { color: "#888", fontSize: "12px", display: "none" } });
        const items = pictures[kind].indices.map((i) => {
          const label = (pictures[kind].labels || {})[String(i)] ?? String(i);
          const img = el("img", { className: "picture", alt: label, style: { width: PICTURE_SIZE, height: PICTURE_SIZE, objectFit: "contain", imageRendering: "pixelated" } });
          Object.assign(img.dataset, { kind, index: String(i), loaded: "0" });
          const na = el("div", { className: "na", text: NA, style: { width: PICTURE_SIZE, height: PICTURE_SIZE, lineHeight: PICTURE_SIZE, textAlign: "center", color: "#888", display: "none" } });
          const caption = el("div", { className: "picture-caption", text: label, title: label, style: { fontSize: "11px", width: PICTURE_SIZE, overflow: "hidden", textOverflow: "ellipsis", whiteSpace: "nowrap" } });
          const figure = el("figure", { className: "picture-item", style: { display: "inline-block", margin: "0 6px 0 0", verticalAlign: "top", textAlign: "center" } }, [img, na, caption]);
          return { kind, index: i, figure, img, na, want: { key: null }, drawn: null, pending: null, url: null, dead: false };
        });
        const row = el("div", { className: "strip-row", style: { whiteSpace: "nowrap", overflowX: "auto" } }, items.map((item) => item.figure));
        const div = el("div", { className: "strip", style: { marginBottom: "8px" } }, [title, note, row]);
        Object.assign(div.dataset, { kind, which });
        stripList.push({ kind, which, div, title, note, row, items });
      }
    }
    strips.replaceChildren(...stripList.map((strip) => strip.div));
    const byElement = new Map(rows.map((r) => [r.tr, r]));
    const byFigure = new Map(stripList.flatMap((strip) => strip.items.map((item) => [item.figure, item])));
    const visible = new Set(), visiblePictures = new Set();
    // Rows and strip pictures load when they scroll into view, so many images x epochs (or
    // classes) stay responsive.
    const observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        const row = byElement.get(entry.target);
        const item = byFigure.get(entry.target);
        if (entry.isIntersecting) {
          if (row) { visible.add(row); loadRow(row); }
          if (item) { visiblePictures.add(item); loadPicture(item); }
        } else {
          visible.delete(row);
          visiblePictures.delete(item);
        }
      }
    });
    layout = { run, columns, headers, rows, strips: stripList, observer, visible, visiblePictures };
    rows.forEach((row) => observer.observe(row.tr));
    byFigure.forEach((item, figure) => observer.observe(figure));
    const title = run;
    cached(scalars, run, () => getJSON("./scalars", { run })).then((values) => {
      if (layout.run !== title) return;
      charts.replaceChildren(...Object.keys(values).sort().map((tag) => sparkline(tag.replace("explanations/", ""), values[tag])));
    }).catch((error) => console.error(error));
  }

  // Point every cell at the chosen steps; rows in view fetch what they lack.
  function update() {
    const g = ++generation;
    const run = state.run, info = runs[run], steps = info.steps;
    slider.max = sliderB.max = Math.max(0, steps.length - 1);
    state.index = Math.max(0, Math.min(state.index, steps.length - 1));
    state.indexB = Math.max(0, Math.min(state.indexB, steps.length - 1));
    slider.value = state.index;
    sliderB.value = state.indexB;
    sliderB.disabled = !state.compare;
    const step = steps[state.index], stepB = steps[state.indexB];
    epochLabel.textContent = ` ${step + 1}`;
    epochLabelB.textContent = state.compare ? ` ${stepB + 1}` : "";
    layout.columns.forEach((c, k) => {
      const s = c.which === "a" ? step : stepB;
      layout.headers[k].textContent = `${(info.labels && info.labels[c.method]) || c.method} @${s + 1}`;
    });
    for (const row of layout.rows) {
      for (const cell of row.cells) {
        const { method, which } = cell.column;
        const s = which === "a" ? step : stepB;
        const key = `${method}@${s}`;
        if (cell.want.key === key) continue;
        cell.want = { key, method, step: s };
        if (cell.pending && cell.pending.key !== key) {
          cell.pending.controller.abort();
          cell.pending = null;
        }
        const methodSteps = info.method_steps && info.method_steps[method];
        if (methodSteps && !methodSteps.includes(s)) cell.drawn = { key, status: "missing", step: s };  // method not logged then
        if (cell.drawn && cell.drawn.key === key) show(cell, cell.drawn.status, s);
        else show(cell, "loading", s);
      }
    }
    for (const strip of layout.strips) {
      const s = strip.which === "a" ? step : stepB;
      const kind = info.pictures[strip.kind], logged = kind.steps.includes(s);
      strip.div.dataset.step = String(s);
      strip.div.dataset.state = logged ? "shown" : "missing";
      strip.title.textContent = `${kind.title}: epoch ${s + 1}${strip.which === "b" ? " (compare)" : ""}`;
      strip.note.textContent = logged ? "" : `${NA}: no ${kind.title} logged at epoch ${s + 1}`;
      strip.note.style.display = logged ? "none" : "";
      strip.row.style.display = logged ? "" : "none";
      const key = String(s);
      for (const item of strip.items) {
        if (item.want.key === key) continue;
        item.want = { key, step: s };
        if (item.pending && item.pending.key !== key) {
          item.pending.controller.abort();
          item.pending = null;
        }
        if (!logged) item.drawn = { key, status: "missing", step: s };  // the kind was not logged then
        if (item.drawn && item.drawn.key === key) showPicture(item, item.drawn.status, s);
        else showPicture(item, "loading", s);
      }
    }
    grid.dataset.step = String(step);  // set once the cells want the new step, so tests can wait on it
    scheduleLoad();
    const name = (k) => (isNumber(k) ? (info.class_names && info.class_names[k] !== undefined ? info.class_names[k] : String(k)) : NA);
    cached(predictions, `${run}\n${step}`, () => getJSON("./predictions", { run, step })).then((answer) => {
      if (g !== generation) return;  // a newer slider position owns the captions
      for (const row of layout.rows) {
        const p = answer[String(row.index)];
        let text = "";
        if (p) {
          text = `predicted ${name(p.predicted)} (${percent(p.predicted_probability)})`;
          if (info.labeled || p.explained !== p.predicted) {
            text += `, explaining ${name(p.explained)} (${percent(p.explained_probability)})`;
          }
        }
        row.caption.textContent = text;
        row.caption.dataset.step = String(step);
      }
    }).catch((error) => console.error(error));
  }

  runSelect.onchange = () => { state.run = runSelect.value; state.index = runs[state.run].steps.length - 1; build(); update(); };
  slider.oninput = () => { state.index = Number(slider.value); update(); };
  sliderB.oninput = () => { state.indexB = Number(sliderB.value); update(); };
  compare.onchange = () => { state.compare = compare.checked; build(); update(); };
  // Opacity and colormap recolour the pixels each cell already holds: no request.
  opacity.oninput = () => { state.opacity = Number(opacity.value); schedulePaint(); };
  colormap.onchange = () => { state.colormap = colormap.value; schedulePaint(); };
  state.index = runs[state.run].steps.length - 1;
  build();
  update();
}
