// "Download PNG": the grid as shown, drawn again on one canvas: the rows in view, their run
// headers, column titles and captions, in the theme's colours (its CSS variables), the cells as
// they are painted now (a cell still loading shows "…", a missing one n/a), and under the title the
// settings it was drawn with.

import { CAPTION_LINES, LINE, TOOLBAR } from "./theme.js";
import { NA, el, epochText, isNumber } from "./util.js";

// How the picture was drawn, in one line under its title.
export function settingsLine(state, stepA, stepB) {
  const s = state.settings, f = state.filters;
  const filters = [f.true !== "" ? `true class ${f.true}` : "", f.pred !== "" ? `predicted ${f.pred}` : "",
    f.show !== "all" ? f.show : "", state.sort !== "index" ? `sort ${state.sort}` : ""].filter(Boolean);
  return [`epoch ${epochText(stepA())}${state.compare ? ` vs ${epochText(stepB())}` : ""}`,
    `polarity ${s.polarity}`, s.clip ? `clip ${s.clip[0]}-${s.clip[1]}%` : "clip per method",
    `colormap ${s.colormap}`, `${s.mode} (opacity ${s.opacity})`, `filters: ${filters.length ? filters.join(", ") : "none"}`].join(" · ");
}

// `view`, `stepA`, `stepB`: grid.js's; `colorOf`: a run's colour (theme.js). Resolves to what was
// drawn: {width, height, rows: image indices}.
export async function downloadPNG({ view, state, stepA, stepB, colorOf }) {
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
  const headH = 48, rowH = size + captionH + 24, title = 42;
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = title + headH + rows.length * rowH + gap;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = colour("--ki-card");
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.textBaseline = "top";
  ctx.font = `500 14px Roboto, "Helvetica Neue", Arial, sans-serif`;
  ctx.fillStyle = colour("--ki-fg");
  ctx.fillText(`Explanations, epoch ${epochText(stepA())}${state.compare ? ` vs ${epochText(stepB())}` : ""}`, gap, 6);
  const fit = (text, w) => {
    if (ctx.measureText(text).width <= w) return text;
    while (text && ctx.measureText(`${text}…`).width > w) text = text.slice(0, -1);
    return `${text}…`;
  };
  ctx.font = font;
  ctx.fillStyle = colour("--ki-muted");
  const line = settingsLine(state, stepA, stepB);
  ctx.fillText(fit(line, width - 2 * gap), gap, 24);
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
          const state_ = c.td.dataset.state;
          ctx.fillText(state_ === "missing" ? NA : state_ === "error" ? "error" : "…", cx + size / 2 - 8, y + size / 2 - 6);
        }
      });
      x0 += widths[k];
    });
  });
  const blob = await new Promise((done) => canvas.toBlob(done, "image/png"));
  const href = URL.createObjectURL(blob);
  const a = el("a", { href, download: `explanations_epoch_${isNumber(stepA()) ? stepA() + 1 : "none"}.png` });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 60_000);
  return { width: canvas.width, height: canvas.height, rows: rows.map((row) => row.index), settings: line };
}
