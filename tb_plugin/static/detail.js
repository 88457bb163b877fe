// The detail view of one (image, method): the input and its overlay large, the colour bar, the
// value under the cursor, the caption, a filmstrip of the map at every logged epoch (how the
// explanation formed during training) and the class-model pictures of the selected epoch.
//
// Same drawing model as the grid: the big overlay and each frame paint only the step they still
// want; frames load when they scroll into the strip's view, so 100 epochs are not 100 requests at
// once. Names from the logs are only ever set as textContent. Epochs are labelled step + 1, as in
// the grid; data-step attributes keep the logged step.

import { DEFAULT_SETTINGS, colorBar, formatValue, paint, valueAt } from "./maps.js";
import { NOT_LOGGED, el, failure } from "./util.js";

const BIG = "320px", FRAME = "64px", PICTURE = "96px";

const panelStyle = {
  background: "var(--ki-card, #fff)", color: "var(--ki-fg, #212121)", border: "1px solid var(--ki-border, #ddd)",
  borderRadius: "4px", boxShadow: "0 4px 24px rgba(0, 0, 0, 0.35)", padding: "12px 16px",
  maxWidth: "95vw", maxHeight: "95vh", overflow: "auto", boxSizing: "border-box", fontFamily: "Roboto, sans-serif",
};

// options.caption: a string, or (step) => string | Promise<string>: the caption of the selected
// epoch (predictions change during training). options.settings: the settings of the cell's column
// (its clip and signedness resolved, see state.js's columnSettings).
export function openDetail(options) {
  const opts = { steps: [], pictures: () => [], onClose: () => {}, ...options };
  let settings = { ...DEFAULT_SETTINGS, ...(opts.settings || {}) };
  const steps = [...opts.steps];
  let selected = steps.includes(opts.step) ? opts.step : steps[steps.length - 1];
  const previousFocus = document.activeElement;

  // ---- layout
  const close = el("button", { className: "detail-close", type: "button", text: "\u00d7", title: "close (Esc)",
    style: { fontSize: "20px", lineHeight: "20px", background: "none", border: "none", color: "inherit", cursor: "pointer" } });
  close.setAttribute("aria-label", "close");
  const title = el("div", { id: "detail-title", text: opts.title ?? "", style: { fontSize: "15px", fontWeight: "500", flex: "1" } });
  if (opts.runColor) Object.assign(title.style, { borderLeft: `4px solid ${opts.runColor}`, paddingLeft: "6px" });
  const header = el("div", { style: { display: "flex", alignItems: "center", gap: "8px", marginBottom: "8px" } }, [title, close]);

  const big = { width: BIG, imageRendering: "pixelated", display: "block", background: "var(--ki-bg, #f5f5f5)" };
  const inputCanvas = el("canvas", { id: "detail-input", width: 1, height: 1, style: big });
  const overlay = el("canvas", { id: "detail-overlay", width: 1, height: 1, style: { ...big, cursor: "crosshair" } });
  const overlayNA = el("div", { className: "na", text: "n/a", style: { width: BIG, textAlign: "center", color: "#888", display: "none" } });
  const stepLabel = el("div", { id: "detail-step", style: { fontSize: "12px", margin: "4px 0" } });
  const barSlot = el("div", { id: "detail-colorbar", style: { minHeight: "28px" } });
  const readout = el("div", { id: "detail-value", text: "\u00a0", style: { fontSize: "12px", fontFamily: "monospace", minHeight: "1.2em" } });
  const caption = el("div", { id: "detail-caption", text: typeof opts.caption === "function" ? "" : opts.caption ?? "", style: { fontSize: "12px", maxWidth: "660px", margin: "6px 0", whiteSpace: "pre-wrap" } });
  const figure = (label, children) => el("div", { style: { display: "inline-block", verticalAlign: "top", marginRight: "12px" } },
    [el("div", { text: label, style: { fontSize: "12px", marginBottom: "2px" } }), ...children]);
  const pictures = el("div", { id: "detail-pictures", style: { display: "inline-block", verticalAlign: "top", maxWidth: "360px" } });
  const view = el("div", { style: { whiteSpace: "nowrap" } }, [
    figure("input", [inputCanvas]),
    figure("map", [overlay, overlayNA, stepLabel, barSlot, readout]),
    pictures,
  ]);
  const strip = el("div", { id: "detail-filmstrip", style: {
    display: "flex", gap: "4px", overflowX: "auto", overflowY: "hidden", padding: "4px 0", maxWidth: "min(90vw, 1000px)",
    borderTop: "1px solid var(--ki-border, #ddd)", marginTop: "6px" } });
  const panel = el("div", { className: "detail-panel", style: panelStyle }, [header, view, caption, strip]);
  const root = el("div", { id: "detail", style: {
    position: "fixed", inset: "0", zIndex: "1000", display: "flex", alignItems: "center", justifyContent: "center",
    background: "rgba(0, 0, 0, 0.5)" } }, [panel]);
  root.setAttribute("role", "dialog");
  root.setAttribute("aria-modal", "true");
  root.setAttribute("aria-labelledby", "detail-title");

  // ---- state
  let input = null, shownMap = null, closed = false;
  const inputPromise = Promise.resolve().then(() => opts.loadInput());
  const maps = new Map();  // step -> Promise of the map (or null): one request per step, shared by frame and view
  const mapFor = (step) => {
    if (!maps.has(step)) {
      const promise = Promise.resolve().then(() => opts.loadMap(step));
      promise.catch(() => maps.delete(step));  // a failed load may be retried
      maps.set(step, promise);
    }
    return maps.get(step);
  };

  const frames = steps.map((step) => {
    const canvas = el("canvas", { width: 1, height: 1, style: { width: FRAME, imageRendering: "pixelated", display: "block" } });
    const na = el("div", { text: "n/a", style: { width: FRAME, height: FRAME, lineHeight: FRAME, textAlign: "center", color: "#888", display: "none" } });
    const node = el("button", { type: "button", className: "frame", title: `epoch ${step + 1}`, dataset: { step: String(step), state: "idle" },
      style: { flex: "none", padding: "2px", background: "none", color: "inherit", border: "2px solid transparent", borderRadius: "3px", cursor: "pointer", minHeight: FRAME } },
      [canvas, na, el("div", { text: String(step + 1), style: { fontSize: "10px" } })]);
    node.addEventListener("click", () => select(step));
    return { step, node, canvas, na, map: null, requested: false };
  });
  strip.append(...frames.map((f) => f.node));

  async function loadFrame(frame) {
    if (frame.requested) return;
    frame.requested = true;
    frame.node.dataset.state = "loading";
    try {
      const [inp, map] = await Promise.all([inputPromise, mapFor(frame.step)]);
      if (closed) return;
      frame.map = map;
      if (map) {
        paint(frame.canvas, inp, map, settings);
        frame.canvas.style.display = "block";
        frame.na.style.display = "none";
        frame.node.dataset.state = "loaded";
      } else showFrame(frame, "missing", NOT_LOGGED);
    } catch (error) {
      if (closed) return;
      frame.requested = false;  // asked again when selected
      showFrame(frame, "error", failure(error));
    }
  }
  function showFrame(frame, status, why) {
    frame.canvas.style.display = "none";
    Object.assign(frame.na, { textContent: status === "error" ? "error" : "n/a", title: why });
    frame.na.style.display = "";
    frame.node.dataset.state = status;
  }
  // Frames load when they come into the strip's view (and a little beyond, so scrolling is smooth).
  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      const frame = frames.find((f) => f.node === entry.target);
      if (frame) loadFrame(frame);
    }
  }, { root: strip, rootMargin: "0px 64px" });
  frames.forEach((f) => observer.observe(f.node));

  function renderPictures(step) {
    let groups = [];
    try {
      groups = opts.pictures(step) || [];
    } catch (error) {
      console.error(error);
    }
    pictures.replaceChildren(...groups.map((group) => el("div", { className: "detail-picture-group", style: { marginBottom: "8px", whiteSpace: "normal" } }, [
      el("div", { className: "detail-picture-title", text: `${group.title ?? ""} (epoch ${step + 1})`, style: { fontSize: "12px", fontWeight: "500", marginBottom: "2px" } }),
      ...(group.items || []).map((item) => {
        const img = el("img", { className: "detail-picture", alt: String(item.label ?? ""), dataset: { step: String(step) },
          style: { width: PICTURE, height: PICTURE, objectFit: "contain", imageRendering: "pixelated", display: "block" } });
        const na = el("div", { className: "na", text: "n/a", style: { width: PICTURE, height: PICTURE, lineHeight: PICTURE, textAlign: "center", color: "#888", display: "none" } });
        img.addEventListener("error", () => { img.style.display = "none"; na.style.display = ""; });
        img.src = item.url;
        return el("figure", { className: "detail-picture-item", style: { display: "inline-block", margin: "0 6px 4px 0", textAlign: "center", verticalAlign: "top" } }, [
          img, na, el("figcaption", { text: String(item.label ?? ""), title: String(item.label ?? ""),
            style: { fontSize: "11px", width: PICTURE, overflow: "hidden", textOverflow: "ellipsis", whiteSpace: "nowrap" } }),
        ]);
      }),
    ])));
  }

  function drawBig() {
    if (!input || !shownMap) return;
    paint(overlay, input, shownMap, settings);
    barSlot.replaceChildren(colorBar(shownMap, settings));
  }

  async function select(step) {
    selected = step;
    for (const f of frames) {
      const on = f.step === step;
      f.node.classList.toggle("selected", on);
      f.node.setAttribute("aria-pressed", String(on));
      f.node.style.borderColor = on ? (opts.runColor || "var(--ki-fg, #212121)") : "transparent";
    }
    const frame = frames.find((f) => f.step === step);
    if (frame) {
      frame.node.scrollIntoView({ block: "nearest", inline: "nearest" });
      if (frame.node.dataset.state === "error") loadFrame(frame);
    }
    stepLabel.textContent = `epoch ${step + 1}`;
    root.dataset.step = String(step);
    renderPictures(step);
    showCaption(step);
    overlay.style.opacity = "0.4";
    let map = null, error = null;
    try {
      [input, map] = await Promise.all([inputPromise, mapFor(step)]);
    } catch (e) {
      error = e;
    }
    if (closed || selected !== step) return;  // moved on while this was in flight
    overlay.style.opacity = "1";
    if (input && !inputCanvas.dataset.drawn) {
      inputCanvas.width = input.width;
      inputCanvas.height = input.height;
      inputCanvas.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(input.pixels), input.width, input.height), 0, 0);
      inputCanvas.dataset.drawn = "1";
    }
    shownMap = map;
    overlay.style.display = map ? "block" : "none";
    overlayNA.style.display = map ? "none" : "";
    Object.assign(overlayNA, error ? { textContent: "error", title: failure(error) } : { textContent: "n/a", title: NOT_LOGGED });
    root.dataset.state = map ? "loaded" : error ? "error" : "missing";
    if (map) drawBig();
    else barSlot.replaceChildren();
  }

  // The caption of the selected epoch; a late answer for an epoch no longer selected is dropped.
  function showCaption(step) {
    if (typeof opts.caption !== "function") return;
    caption.dataset.step = "";
    Promise.resolve().then(() => opts.caption(step)).then((text) => {
      if (closed || selected !== step) return;
      caption.textContent = text ?? "";
      caption.dataset.step = String(step);
    }, (error) => console.error(error));
  }

  overlay.addEventListener("mousemove", (event) => {
    if (!shownMap) return;
    const box = overlay.getBoundingClientRect();
    const u = (event.clientX - box.left) / box.width, v = (event.clientY - box.top) / box.height;
    if (u < 0 || v < 0 || u >= 1 || v >= 1) return;
    const value = valueAt(shownMap, u, v);
    readout.dataset.value = String(value);
    readout.textContent = `value ${formatValue(value)}${shownMap.exact ? "" : " (scaled 0-1)"}`;
  });
  overlay.addEventListener("mouseleave", () => {
    delete readout.dataset.value;
    readout.textContent = "\u00a0";
  });

  function onKey(event) {
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      api.close();
    } else if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
      // Epochs move inside the view while it is open, not in the grid under it.
      const at = steps.indexOf(selected) + (event.key === "ArrowLeft" ? -1 : 1);
      event.preventDefault();
      event.stopPropagation();
      if (at >= 0 && at < steps.length) select(steps[at]);
    }
  }
  document.addEventListener("keydown", onKey, true);
  root.addEventListener("click", (event) => { if (event.target === root) api.close(); });
  close.addEventListener("click", () => api.close());

  const api = {
    element: root,
    close() {
      if (closed) return;
      closed = true;
      observer.disconnect();
      document.removeEventListener("keydown", onKey, true);
      root.remove();
      if (previousFocus && typeof previousFocus.focus === "function") previousFocus.focus();
      opts.onClose();
    },
    // The grid's settings changed while the view is open: recolour what is drawn.
    setSettings(next) {
      settings = { ...DEFAULT_SETTINGS, ...next };
      drawBig();
      inputPromise.then((inp) => {
        for (const f of frames) if (f.map) paint(f.canvas, inp, f.map, settings);
      }).catch(() => {});
    },
    select,
  };

  document.body.appendChild(root);
  close.focus();
  if (selected !== undefined) select(selected);
  return api;
}
