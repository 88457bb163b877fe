// Explanations dashboard for keras_interp. An ES module loaded by TensorBoard in an iframe:
// no inline scripts, no external assets, and every URL relative to this module, so the page
// works behind --path_prefix. Names from the logs are only ever set as textContent.

const base = (path) => new URL(path, import.meta.url).toString();

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

const pad = (i) => String(i).padStart(3, "0");

const COLORMAPS = {
  jet: (t) => [1.5 - Math.abs(4 * t - 3), 1.5 - Math.abs(4 * t - 2), 1.5 - Math.abs(4 * t - 1)],
  inferno: (t) => [Math.min(1, 1.6 * t), Math.max(0, 1.4 * t - 0.35) ** 1.2, Math.max(0, 0.55 - Math.abs(t - 0.35)) + Math.max(0, t - 0.85) * 3],
  grey: (t) => [t, t, t],
};

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

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`could not load ${url}`));
    img.src = url;
  });
}

// Draw the input with the map coloured over it; opacity and colormap are browser-side settings.
function drawOverlay(canvas, input, map, opacity, colormap) {
  const w = input.naturalWidth, h = input.naturalHeight;
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(input, 0, 0);
  const under = ctx.getImageData(0, 0, w, h);
  const scratch = document.createElement("canvas");
  scratch.width = w;
  scratch.height = h;
  const sctx = scratch.getContext("2d");
  sctx.imageSmoothingEnabled = true;
  sctx.drawImage(map, 0, 0, w, h);
  const values = sctx.getImageData(0, 0, w, h).data;
  const cmap = COLORMAPS[colormap] || COLORMAPS.jet;
  for (let p = 0; p < w * h; p++) {
    const c = cmap(values[4 * p] / 255).map((v) => 255 * Math.max(0, Math.min(1, v)));
    for (let k = 0; k < 3; k++) {
      under.data[4 * p + k] = (1 - opacity) * under.data[4 * p + k] + opacity * c[k];
    }
  }
  ctx.putImageData(under, 0, 0);
}

function sparkline(title, points) {
  const width = 180, height = 48;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  const steps = points.map((p) => p[0]), values = points.map((p) => p[1]);
  const [s0, s1] = [Math.min(...steps), Math.max(...steps)];
  const [v0, v1] = [Math.min(0, ...values), Math.max(1, ...values)];
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#f57c00");
  line.setAttribute("stroke-width", "2");
  line.setAttribute("points", points.map(([s, v]) =>
    `${((s - s0) / Math.max(1, s1 - s0)) * (width - 4) + 2},${height - 2 - ((v - v0) / (v1 - v0)) * (height - 4)}`).join(" "));
  svg.appendChild(line);
  const last = values.length ? values[values.length - 1].toFixed(3) : "-";
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
  const grid = el("table", { id: "grid", style: { borderCollapse: "collapse" } });
  const controls = el("div", { style: { marginBottom: "8px", lineHeight: "2em" } }, [
    el("label", { text: "run " }), runSelect, el("span", { text: "  epoch " }), slider, epochLabel,
    el("label", { text: "  compare with " }), compare, sliderB, epochLabelB,
    el("span", { text: "  opacity " }), opacity, el("span", { text: "  colormap " }), colormap,
  ]);
  document.body.append(controls, charts, grid);

  let observer = null;
  const scalarCache = {};
  async function draw() {
    const info = runs[state.run];
    const steps = info.steps;
    slider.max = sliderB.max = Math.max(0, steps.length - 1);
    state.index = Math.min(state.index, steps.length - 1);
    state.indexB = Math.min(state.indexB, steps.length - 1);
    slider.value = state.index;
    sliderB.value = state.indexB;
    sliderB.disabled = !state.compare;
    const step = steps[state.index], stepB = steps[state.indexB];
    epochLabel.textContent = ` ${step + 1}`;
    epochLabelB.textContent = state.compare ? ` ${stepB + 1}` : "";
    const predictions = await getJSON("./predictions", { run: state.run, step });
    // Scalars depend only on the run: fetch them once per run, not on every slider move.
    scalarCache[state.run] = scalarCache[state.run] || (await getJSON("./scalars", { run: state.run }));
    const scalars = scalarCache[state.run];
    charts.replaceChildren(...Object.keys(scalars).sort().map((tag) => sparkline(tag.replace("explanations/", ""), scalars[tag])));
    const columns = [];
    for (const method of info.methods) {
      columns.push({ method, step, title: `${method} @${step + 1}` });
      if (state.compare) columns.push({ method, step: stepB, title: `${method} @${stepB + 1}` });
    }
    const header = el("tr", {}, [el("th", { text: "input" }), ...columns.map((c) => el("th", { text: c.title, style: { padding: "0 6px" } }))]);
    const rows = info.images.map((i) => {
      const p = predictions[String(i)];
      const name = (k) => (info.class_names && info.class_names[k] !== undefined ? info.class_names[k] : String(k));
      const caption = p ? `predicted ${name(p.predicted)} (${(100 * p.confidence).toFixed(1)}%), explaining ${name(p.explained)}` : "";
      const row = el("tr", { className: "image-row" }, [
        el("td", {}, [el("img", { className: "input", alt: `input ${i}`, style: { width: "128px", imageRendering: "pixelated" } }), el("div", { text: caption, style: { fontSize: "11px", maxWidth: "140px" } })]),
        ...columns.map((c) => el("td", {}, [el("canvas", { className: "overlay", style: { width: "128px", imageRendering: "pixelated" } })])),
      ]);
      row.dataset.index = String(i);
      row.loadCells = async () => {
        const input = row.querySelector("img.input");
        input.src = imageURL(state.run, `keras_interp/input/${pad(i)}`, steps[0]);
        const inputImage = await loadImage(input.src);
        const canvases = row.querySelectorAll("canvas.overlay");
        await Promise.all(columns.map(async (c, k) => {
          const map = await loadImage(imageURL(state.run, `keras_interp/map/${c.method}/${pad(i)}`, c.step));
          drawOverlay(canvases[k], inputImage, map, state.opacity, state.colormap);
          canvases[k].dataset.loaded = "1";
        }));
      };
      return row;
    });
    grid.replaceChildren(header, ...rows);
    grid.dataset.step = String(step);  // set once the new rows are in, so tests can wait on it
    // Rows load when they scroll into view, so 100 epochs x many images stay responsive.
    if (observer) observer.disconnect();
    observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (entry.isIntersecting) {
          observer.unobserve(entry.target);
          entry.target.loadCells().catch((error) => console.error(error));
        }
      }
    });
    rows.forEach((row) => observer.observe(row));
  }

  runSelect.onchange = () => { state.run = runSelect.value; draw(); };
  slider.oninput = () => { state.index = Number(slider.value); draw(); };
  sliderB.oninput = () => { state.indexB = Number(sliderB.value); draw(); };
  compare.onchange = () => { state.compare = compare.checked; draw(); };
  opacity.oninput = () => { state.opacity = Number(opacity.value); draw(); };
  colormap.onchange = () => { state.colormap = colormap.value; draw(); };
  state.index = runs[state.run].steps.length - 1;
  await draw();
}
