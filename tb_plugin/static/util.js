// Small helpers shared by the dashboard's modules: building elements (names from the logs only
// ever go in as textContent, never as markup), requests relative to this module (so TensorBoard's
// --path_prefix works), the tags summary.py writes, and a once-per-frame scheduler.

export const base = (path) => new URL(path, import.meta.url).toString();
export const NA = "n/a";

export function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "style") Object.assign(node.style, v);
    else if (k === "text") node.textContent = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node[k] = v;
  }
  for (const child of children) node.appendChild(child);
  return node;
}

// A grid cell or strip picture shows "loaded", "loading" (the previous picture dimmed), "missing"
// (n/a: not logged) or "error" (the request failed: `why` says how; asked again on the next
// want): `box` carries the state, `picture` the drawn step, `na` the n/a or error text.
export function showState(box, picture, na, status, step, why = "") {
  box.dataset.state = status;
  picture.dataset.loaded = status === "loaded" ? "1" : "0";
  if (status === "loaded") picture.dataset.step = String(step);
  const blank = status === "missing" || status === "error";
  picture.style.display = blank ? "none" : "";
  picture.style.opacity = status === "loading" ? "0.4" : "1";
  na.style.display = blank ? "" : "none";
  na.textContent = status === "error" ? "error" : NA;
  na.title = status === "error" ? why : status === "missing" ? NOT_LOGGED : "";
}
export const NOT_LOGGED = "not logged at this epoch";

// What a failed request tells the user: the HTTP status, or that the server could not be reached.
export const failure = (error) => (error instanceof HTTPError ? `error: HTTP ${error.status}` : `error: ${error && error.message ? error.message : error}`);

export const options = (pairs) => pairs.map(([value, text]) => el("option", { value, text }));

export async function getJSON(path, params) {
  const url = new URL(base(path));
  for (const [k, v] of Object.entries(params || {})) url.searchParams.set(k, v);
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

export class HTTPError extends Error {
  constructor(url, status) {
    super(`HTTP ${status}`);
    Object.assign(this, { url, status });
  }
}
// 404: not logged (n/a); any other failure is an error, not to be remembered as an answer.
export class Missing extends HTTPError {
  constructor(url) { super(url, 404); }
}

export async function fetchBlob(url, signal) {
  const response = await fetch(url, { signal });
  if (response.status === 404) throw new Missing(url);
  if (!response.ok) throw new HTTPError(url, response.status);
  return response.blob();
}

const pad = (i) => String(i).padStart(3, "0");  // 7 -> "007", 1000 -> "1000", as summary.py writes
export const inputTag = (i) => `keras_interp/input/${pad(i)}`;
export const mapTag = (method, i) => `keras_interp/map/${method}/${pad(i)}`;
export const pictureTag = (kind, i) => `keras_interp/${kind}/${pad(i)}`;  // kinds come from /runs
export const isNumber = (v) => typeof v === "number" && Number.isFinite(v);
export const percent = (p) => (isNumber(p) ? `${(100 * p).toFixed(1)}%` : NA);
// Epochs are labelled step + 1; runs with no logged step have no epoch to name.
export const epochText = (step) => (isNumber(step) ? String(step + 1) : NA);
// The epoch as the slider shows it with TensorBoard's step beside it: Keras's epoch 8 is the
// event's step 7, the number TensorBoard's Time Series and Images dashboards show.
export const epochAndStep = (step) => (isNumber(step) ? `${step + 1} (step ${step})` : NA);

// A hook on TensorBoard's window (a listener, an observer) lives as long as this frame is shown:
// TensorBoard may re-create the plugin's iframe, and each hook left on the parent would keep a dead
// frame alive and running. attach() installs it and returns what removes it.
export function whileShown(attach) {
  let detach = attach();
  window.addEventListener("pagehide", () => { if (detach) detach(); detach = null; });
  window.addEventListener("pageshow", (event) => { if (event.persisted && !detach) detach = attach(); });  // back from the bfcache
}

// fn at most once per animation frame, however many events asked for it in between.
export function oncePerFrame(fn) {
  let scheduled = false;
  return () => {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => { scheduled = false; fn(); });
  };
}
