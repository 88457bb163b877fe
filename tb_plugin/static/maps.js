// Decoding and drawing of one explanation map: the real values out of the logged PNG, the
// percentile cuts of the chosen polarity, and the overlay (heat or outline) over the input.
//
// Maps are immutable once decoded, so what depends only on the map (sorted magnitudes per
// polarity, values resampled to the input's size) is cached in WeakMaps keyed by the map object:
// a slider move over 1,000 maps recolours them without sorting or resampling anything again.

export const SEQUENTIAL = ["jet", "inferno", "viridis", "grey"];
export const DEFAULT_SETTINGS = Object.freeze({ polarity: "auto", clip: [62, 99.9], colormap: "jet", opacity: 0.5, mode: "heat" });
// Settings may also carry `signed`: the column's declaration (true, false, or null = unknown), which
// "auto" polarity follows (see resolve); the caller resolves `clip` per method (state.js).

// Polynomial fits of matplotlib's inferno and viridis (mattz, CC0): within a few levels of the
// tables, without shipping them.
const poly = (c) => (t) => [0, 1, 2].map((k) => c.reduceRight((acc, row) => acc * t + row[k], 0));
const COLORMAPS = {
  jet: (t) => [1.5 - Math.abs(4 * t - 3), 1.5 - Math.abs(4 * t - 2), 1.5 - Math.abs(4 * t - 1)],
  inferno: poly([
    [0.0002189403691192265, 0.001651004631001012, -0.01948089843709184],
    [0.1065134194856116, 0.5639564367884091, 3.932712388889277],
    [11.60249308247187, -3.972853965665698, -15.9423941062914],
    [-41.70399613139459, 17.43639888205313, 44.35414519872813],
    [77.162935699427, -33.40235894210092, -81.80730925738993],
    [-71.31942824499214, 32.62606426397723, 73.20951985803202],
    [25.13112622477341, -12.24266895238567, -23.07032500287172],
  ]),
  viridis: poly([
    [0.2777273272234177, 0.005407344544966578, 0.3340998053353061],
    [0.1050930431085774, 1.404613529898575, 1.384590162594685],
    [-0.3308618287255563, 0.214847559468213, 0.09509516302823659],
    [-4.634230498983486, -5.799100973351585, -19.33244095627987],
    [6.228269936347081, 14.17993336680509, 56.69055260068105],
    [4.776384997670288, -13.74514537774601, -65.35303263337234],
    [-5.435455855934631, 4.645852612178535, 26.3124352495832],
  ]),
  grey: (t) => [t, t, t],
};

function lutOf(f) {
  const lut = new Uint8ClampedArray(256 * 3);
  for (let v = 0; v < 256; v++) {
    const c = f(v / 255);
    for (let k = 0; k < 3; k++) lut[3 * v + k] = Math.round(255 * Math.max(0, Math.min(1, c[k])));
  }
  return lut;
}
const LUTS = Object.fromEntries(Object.entries(COLORMAPS).map(([name, f]) => [name, lutOf(f)]));
// Diverging halves (ColorBrewer RdBu): from its mid colours at the low cut to its ends at the high
// cut, so the sign reads at a glance and strength by depth of colour. RdBu's palest colours would
// read as a grey wash at half opacity. Red always means positive, blue negative: "negative" uses
// the blue half whatever the sequential colormap.
const ramp = (a, b) => (t) => a.map((x, k) => (x + (b[k] - x) * t) / 255);
const RED = lutOf(ramp([244, 165, 130], [178, 24, 43]));
const BLUE = lutOf(ramp([146, 197, 222], [33, 102, 172]));

// ---- decoding -------------------------------------------------------------------------------

// The keras_interp tEXt chunk's JSON, or null (a PNG of an older logger, or not ours).
function readMetadata(buffer) {
  const bytes = new Uint8Array(buffer), view = new DataView(buffer);
  const signature = [137, 80, 78, 71, 13, 10, 26, 10];
  if (bytes.length < 8 || signature.some((b, i) => bytes[i] !== b)) return null;
  for (let at = 8; at + 8 <= bytes.length;) {
    const length = view.getUint32(at), type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    const data = bytes.subarray(at + 8, Math.min(bytes.length, at + 8 + length));
    if (type === "IEND") break;
    if (type === "tEXt") {
      const nul = data.indexOf(0);
      const keyword = String.fromCharCode(...data.subarray(0, nul));
      if (nul > 0 && keyword === "keras_interp") {
        try {
          return JSON.parse(new TextDecoder("latin1").decode(data.subarray(nul + 1)));
        } catch {
          return null;
        }
      }
    }
    at += 12 + length;
  }
  return null;
}

function canvasOf(w, h) {
  if (typeof OffscreenCanvas !== "undefined") return new OffscreenCanvas(w, h);
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  return canvas;
}

// Exact RGBA of a PNG: no colour management, no premultiplication (the rg16 bytes are data).
async function rgbaOf(blob) {
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  try {
    const { width, height } = bitmap;
    const ctx = canvasOf(width, height).getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0);
    return { width, height, pixels: ctx.getImageData(0, 0, width, height).data };
  } finally {
    bitmap.close();
  }
}

export async function decodeInput(blob) {
  return rgbaOf(blob);
}

export async function decodeMap(blob) {
  const [meta, { width, height, pixels }] = await Promise.all([blob.arrayBuffer().then(readMetadata), rgbaOf(blob)]);
  const values = new Float32Array(width * height);
  if (meta && meta.encoding === "rg16" && Number.isFinite(meta.lo) && Number.isFinite(meta.hi)) {
    const { lo, hi } = meta, span = (hi - lo) / 65535;
    for (let p = 0, o = 0; p < values.length; p++, o += 4) values[p] = lo + (pixels[o] * 256 + pixels[o + 1]) * span;
    return { width, height, values, lo, hi, exact: true, signed: lo < 0 };
  }
  // Older logs: a min-max scaled grey picture; the real range is unknown.
  for (let p = 0, o = 0; p < values.length; p++, o += 4) values[p] = pixels[o] / 255;
  return { width, height, values, lo: 0, hi: 1, exact: false, signed: false };
}

// ---- scale ----------------------------------------------------------------------------------

const settingsOf = (settings) => ({ ...DEFAULT_SETTINGS, ...(settings || {}) });
// "auto" follows the column's declaration (settings.signed: whether the method's maps can be
// negative; null or absent: unknown), so a column does not mix diverging and sequential maps when
// one map's minimum happens to be 0. A map with negative values is never drawn one-sided by "auto",
// whatever was declared: values are not hidden silently.
function resolve(map, s) {
  const { polarity } = s;
  if (polarity === "positive" || polarity === "negative" || polarity === "both") return polarity;
  return s.signed === true || map.signed ? "both" : "positive";
}
const MAGNITUDE = {
  positive: (x) => (x > 0 ? x : 0),
  negative: (x) => (x < 0 ? -x : 0),
  both: (x) => Math.abs(x),
};

const sortedCache = new WeakMap();  // map -> {polarity: ascending Float32Array of magnitudes}
function sortedMagnitudes(map, polarity) {
  let entry = sortedCache.get(map);
  if (!entry) sortedCache.set(map, (entry = {}));
  if (!entry[polarity]) {
    const m = MAGNITUDE[polarity], sorted = new Float32Array(map.values.length);
    for (let p = 0; p < sorted.length; p++) sorted[p] = m(map.values[p]);
    entry[polarity] = sorted.sort();
  }
  return entry[polarity];
}

// numpy.percentile's default (linear interpolation between the closest ranks).
function percentile(sorted, q) {
  if (!sorted.length) return 0;
  const rank = Math.max(0, Math.min(1, q / 100)) * (sorted.length - 1);
  const i = Math.floor(rank), frac = rank - i;
  return i + 1 < sorted.length ? sorted[i] + (sorted[i + 1] - sorted[i]) * frac : sorted[i];
}

// low and high are cuts on the polarity's magnitude (for "negative", of -x).
export function scaleOf(map, settings) {
  const s = settingsOf(settings);
  const polarity = resolve(map, s);
  const sorted = sortedMagnitudes(map, polarity);
  const [a, b] = s.clip || DEFAULT_SETTINGS.clip;
  const low = percentile(sorted, Math.min(a, b)), high = percentile(sorted, Math.max(a, b));
  return { polarity, low, high, diverging: polarity === "both" && (map.signed || s.signed === true) };
}

// The table of a value: the sign's half of the diverging map on a diverging scale, the blue half
// for "negative" (blue is negative everywhere), the chosen colormap otherwise.
function tableOf(scale, lut, x) {
  if (scale.diverging) return x < 0 ? BLUE : RED;
  return scale.polarity === "negative" ? BLUE : lut;
}

// Colour of value x under a scale, or null where it is not drawn (the input shows through).
function colorer(scale, colormap) {
  const { polarity, low, high } = scale;
  const m = MAGNITUDE[polarity], lut = LUTS[colormap] || LUTS.jet, span = high - low;
  return (x) => {
    const v = m(x);
    if (v <= low || v === 0) return null;
    const t = span > 0 ? Math.min(1, (v - low) / span) : 1;
    const i = 3 * Math.round(255 * t);
    const table = tableOf(scale, lut, x);
    return [table[i], table[i + 1], table[i + 2]];
  };
}

// Solid colour of an outline: the colormap's top, or the sign's colour on a diverging scale.
function outlineColor(scale, colormap, x) {
  const table = tableOf(scale, LUTS[colormap] || LUTS.jet, x);
  return [table[765], table[766], table[767]];
}

// ---- drawing --------------------------------------------------------------------------------

const resampledCache = new WeakMap();  // map -> {key: "w x h", values}
// The map's real values at w x h: bilinear with half-pixel centres (a 1 x L signal row stretches
// over its curve picture, every row alike). Interpolating values, not colours, keeps the cuts exact.
function valuesAt(map, w, h) {
  if (map.width === w && map.height === h) return map.values;
  const cached = resampledCache.get(map), key = `${w}x${h}`;
  if (cached && cached.key === key) return cached.values;
  const { width: mw, height: mh, values: src } = map, out = new Float32Array(w * h);
  const axis = (n, m) => Array.from({ length: n }, (_, i) => {
    const s = Math.max(0, Math.min(m - 1, (i + 0.5) * m / n - 0.5));
    const i0 = Math.floor(s), i1 = Math.min(m - 1, i0 + 1);
    return [i0, i1, s - i0];
  });
  const xs = axis(w, mw), ys = axis(h, mh);
  for (let y = 0; y < h; y++) {
    const [y0, y1, fy] = ys[y], r0 = y0 * mw, r1 = y1 * mw;
    for (let x = 0; x < w; x++) {
      const [x0, x1, fx] = xs[x];
      const top = src[r0 + x0] + (src[r0 + x1] - src[r0 + x0]) * fx;
      const bottom = src[r1 + x0] + (src[r1 + x1] - src[r1 + x0]) * fx;
      out[y * w + x] = top + (bottom - top) * fy;
    }
  }
  resampledCache.set(map, { key, values: out });
  return out;
}

// The input with the map drawn over it, at the input's size. Returns the scale used.
export function paint(canvas, input, map, settings) {
  const s = settingsOf(settings);
  const { width: w, height: h, pixels } = input;
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  const ctx = canvas.getContext("2d");
  const out = ctx.createImageData(w, h), data = out.data;
  data.set(pixels);
  const scale = scaleOf(map, s), values = valuesAt(map, w, h);
  if (s.mode === "outline") {
    const m = MAGNITUDE[scale.polarity], low = scale.low;
    const inside = new Uint8Array(w * h);
    for (let p = 0; p < inside.length; p++) {
      const v = m(values[p]);
      inside[p] = v > low && v > 0 ? 1 : 0;
    }
    // 1 pixel wide at the sizes the grid shows; thicker on big inputs so that it survives downscaling.
    const d = Math.max(1, Math.round(Math.max(w, h) / 160));
    // Edges of the picture are not boundaries: a region reaching them is outlined only inside.
    const out_ = (x, y) => x >= 0 && y >= 0 && x < w && y < h && !inside[y * w + x];
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const p = y * w + x;
        if (!inside[p]) continue;
        let edge = false;
        for (let k = 1; k <= d && !edge; k++) edge = out_(x - k, y) || out_(x + k, y) || out_(x, y - k) || out_(x, y + k);
        if (!edge) continue;
        const c = outlineColor(scale, s.colormap, values[p]);
        data[4 * p] = c[0];
        data[4 * p + 1] = c[1];
        data[4 * p + 2] = c[2];
        data[4 * p + 3] = 255;
      }
    }
  } else {
    // colorer's rule, inlined: no allocation per pixel when 1,000 cells recolour on a slider move.
    const { low, high, diverging } = scale, m = MAGNITUDE[scale.polarity];
    const lut = scale.polarity === "negative" ? BLUE : LUTS[s.colormap] || LUTS.jet;
    const span = high - low, a = Math.max(0, Math.min(1, Number(s.opacity))), b = 1 - a;
    for (let p = 0, o = 0; p < w * h; p++, o += 4) {
      const x = values[p], v = m(x);
      if (v <= low || v === 0) continue;
      const t = span > 0 ? Math.min(1, (v - low) / span) : 1, i = 3 * Math.round(255 * t);
      const table = diverging ? (x < 0 ? BLUE : RED) : lut;
      // On the diverging scale the colour's strength is its depth alone (RdBu is pale at the low
      // cut), so at half opacity a map read as a faint halo: its opacity rises with the value,
      // from the chosen one at the low cut to opaque at the high cut.
      const aa = diverging ? a + b * t : a, bb = 1 - aa;
      data[o] = bb * pixels[o] + aa * table[i];
      data[o + 1] = bb * pixels[o + 1] + aa * table[i + 1];
      data[o + 2] = bb * pixels[o + 2] + aa * table[i + 2];
      data[o + 3] = 255;
    }
  }
  ctx.putImageData(out, 0, 0);
  return scale;
}

// 3 significant digits, without trailing zeros ("-1.5", "0.00123", "1.23e+5").
export function formatValue(x) {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return "0";
  return Math.abs(x) >= 1e5 || Math.abs(x) < 1e-4 ? x.toExponential(2) : String(Number(x.toPrecision(3)));
}

// A bar over the map's value range [lo, hi], each value coloured as paint colours it (blank where
// the clipping leaves the input showing), with ticks at lo, 0 (when inside) and hi.
export function colorBar(map, settings) {
  const s = settingsOf(settings), scale = scaleOf(map, s);
  const W = 160, H = 10, { lo, hi } = map;
  const canvas = document.createElement("canvas");
  canvas.width = W;
  canvas.height = H;
  canvas.className = "colorbar-gradient";
  Object.assign(canvas.style, { width: `${W}px`, height: `${H}px`, display: "block", border: "1px solid var(--ki-border, #ccc)" });
  const ctx = canvas.getContext("2d"), image = ctx.createImageData(W, H);
  const color = s.mode === "outline" ? null : colorer(scale, s.colormap);
  const m = MAGNITUDE[scale.polarity];
  for (let i = 0; i < W; i++) {
    const x = lo + ((i + 0.5) / W) * (hi - lo);
    let c = color ? color(x) : null;
    if (!color && m(x) > scale.low && m(x) > 0) c = outlineColor(scale, s.colormap, x);
    if (!c) continue;
    for (let j = 0; j < H; j++) image.data.set([c[0], c[1], c[2], 255], 4 * (j * W + i));
  }
  ctx.putImageData(image, 0, 0);
  const ticks = document.createElement("div");
  Object.assign(ticks.style, { position: "relative", width: `${W}px`, height: "14px", fontSize: "10px" });
  const tick = (value, text) => {
    const span = document.createElement("span");
    span.className = "tick";
    span.textContent = text;
    span.dataset.value = String(value);
    const at = hi > lo ? (value - lo) / (hi - lo) : 0;
    Object.assign(span.style, { position: "absolute", top: "0", whiteSpace: "nowrap",
      left: `${100 * at}%`, transform: `translateX(${-100 * at}%)` });
    ticks.appendChild(span);
  };
  tick(lo, formatValue(lo));
  // The zero tick only where it clears both end labels (measured in the ticks' font): next to a
  // long minimum such as "-20.34" it would run into it.
  ctx.font = "10px sans-serif";
  const width = (text) => ctx.measureText(text).width, gap = 4;
  if (lo < 0 && hi > 0) {
    const at = -lo / (hi - lo), w0 = width("0"), left = at * (W - w0);
    if (left >= width(formatValue(lo)) + gap && left + w0 <= W - width(formatValue(hi)) - gap) tick(0, "0");
  }
  if (hi !== lo) tick(hi, formatValue(hi));
  const bar = document.createElement("div");
  bar.className = "colorbar";
  bar.dataset.polarity = scale.polarity;
  bar.dataset.diverging = String(scale.diverging);
  Object.assign(bar.style, { display: "inline-block", color: "var(--ki-fg, #212121)" });
  bar.append(canvas, ticks);
  const note = (text, title) => {
    const div = document.createElement("div");
    div.className = "colorbar-note";
    div.textContent = text;
    div.title = title;
    Object.assign(div.style, { fontSize: "10px", opacity: "0.7" });
    bar.appendChild(div);
  };
  if (!map.exact) note("scaled 0-1", "logged by an older version: the real range is unknown");
  // Nothing is drawn for a map without contrast: say so, or the blank overlay reads as a bug.
  else if (hi === lo) note(`constant map (${formatValue(lo)})`, "every value of this map is the same: nothing to draw");
  return bar;
}

export function valueAt(map, u, v) {
  const x = Math.max(0, Math.min(map.width - 1, Math.floor(u * map.width)));
  const y = Math.max(0, Math.min(map.height - 1, Math.floor(v * map.height)));
  return map.values[y * map.width + x];
}
