// Picture strips: one per checked run and kind of runs[run].pictures (e.g. class models), and one
// more at the compare epoch. They follow the grid's drawing model: each picture wants one (kind,
// index, step) picture, loads when in view, and paints only the answer it still wants (an answer
// it no longer wants is aborted or dropped).

import { Missing, NA, el, epochText, failure, fetchBlob, isNumber, pictureTag, showState } from "./util.js";

// `stepA`/`stepB`: the chosen epoch and the compare epoch (grid.js).
export function createStrips({ runs, state, store, stepA, stepB }) {
  const { imageURL } = store;
  const strips = el("div", { id: "pictures" });
  let strip = { items: [], strips: [], observer: null, visible: new Set() };

  function showPicture(item, status, step, why) {
    showState(item.figure, item.img, item.na, status, step, why);
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
      if (error instanceof Missing) {  // e.g. no picture of this class at this step
        item.drawn = { key, step, status: "missing" };
        showPicture(item, "missing", step);
      } else {
        item.drawn = null;  // asked again on the next update
        showPicture(item, "error", step, failure(error));
      }
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
      s.div.dataset.step = isNumber(step) ? String(step) : "none";
      s.div.dataset.state = logged ? "shown" : "missing";
      s.title.textContent = `${kind.title}: epoch ${epochText(step)}${s.which === "b" ? " (compare)" : ""}`;
      s.note.textContent = logged ? "" : `${NA}: no ${kind.title} logged${isNumber(step) ? ` at epoch ${epochText(step)}` : ""}`;
      s.note.style.display = logged ? "none" : "";
      s.row.style.display = logged ? "" : "none";
      const key = String(step);
      for (const item of s.items) {
        if (item.want.key === key && item.figure.dataset.state !== "error") continue;
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

  return { element: strips, build: buildStrips, update: updateStrips };
}
