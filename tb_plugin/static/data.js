// What the dashboard knows about the runs' images, and where it keeps it: image URLs, the decoded
// inputs and maps in bounded caches (shared by the grid and the detail view, so settings changes
// recolour without a request and scrolling back costs nothing), /predictions per run and step (for
// the rows in view by blocks of images, or for every image where a sort or filter needs them),
// one /quality answer per run and step, and the true labels. Image URLs carry the run's version, so the browser
// may keep step-addressed answers.

import { decodeInput, decodeMap } from "./maps.js";
import { Missing, base, fetchBlob, getJSON, inputTag, isNumber, mapTag } from "./util.js";

// Client caches, bounded so that scrolling through 1,000 rows x 6 methods does not grow memory
// without bound: at most 3,000 decoded maps and 96 MB of their values (maps.js may keep as much
// again in sorted copies for the percentiles, dropped with the map), at most 1,500 decoded inputs
// and 96 MB of their pixels (with their blob URLs, revoked once dropped and shown by no row). A
// viewport needs a few hundred of each.
const MAPS_CACHED = 3000, MAP_BYTES = 96 << 20;
const INPUTS_CACHED = 1500, INPUT_BYTES = 96 << 20;
const PREDICTIONS_CACHED = 256;  // /predictions answers kept (run x step), and as many /quality answers
// The rows in view ask /predictions for their block of this many image indices (not the whole
// run: 10,000 images would be a megabyte a step); a sort or filter asks for every image.
export const PREDICTION_BLOCK = 64;
const BLOCKS_CACHED = 2048;  // block answers kept (run x step x block)

// Least recently used first out, bounded by entries and by bytes (a value's size is given when set).
class LRU {
  constructor(entries, bytes, onEvict = () => {}) {
    Object.assign(this, { entries, bytes, onEvict, map: new Map(), size: 0 });
  }
  get(key) {
    const entry = this.map.get(key);
    if (!entry) return undefined;
    this.map.delete(key);
    this.map.set(key, entry);
    return entry.value;
  }
  has(key) { return this.map.has(key); }
  set(key, value, bytes = 0) {
    const old = this.map.get(key);
    if (old) {
      this.map.delete(key);
      this.size -= old.bytes;
      if (old.value !== value) this.onEvict(old.value);
    }
    this.map.set(key, { value, bytes });
    this.size += bytes;
    for (const [k, entry] of this.map) {
      if (this.map.size <= this.entries && this.size <= this.bytes) break;
      if (k === key) continue;
      this.map.delete(k);
      this.size -= entry.bytes;
      this.onEvict(entry.value);
    }
  }
  delete(key) {
    const entry = this.map.get(key);
    if (!entry) return;
    this.map.delete(key);
    this.size -= entry.bytes;
    this.onEvict(entry.value);
  }
}

// The loaders and caches of one /runs answer (`runs`: run -> its info, with imageSet and methodSteps).
export function createStore(runs) {
  // An input's blob URL is revoked once the cache dropped it and no row's <img> shows it (a row
  // holds the entry from its creation: an input dropped while loading still reaches its row).
  const revoke = (entry) => {
    if (entry.dropped && !entry.users && entry.url) {
      URL.revokeObjectURL(entry.url);
      entry.url = null;
    }
  };
  const inputs = new LRU(INPUTS_CACHED, INPUT_BYTES, (entry) => { entry.dropped = true; revoke(entry); });
  const maps = new LRU(MAPS_CACHED, MAP_BYTES);  // key -> decoded map, or null when not logged (404)
  const predictions = new LRU(PREDICTIONS_CACHED, Infinity);  // run + step -> {promise, value}
  const quality = new LRU(PREDICTIONS_CACHED, Infinity);  // run + step -> {promise, value}
  const blocks = new LRU(BLOCKS_CACHED, Infinity);  // run + step + block -> {promise, value}

  function imageURL(run, tag, step) {
    const u = new URL(base("./image"));
    u.searchParams.set("run", run);
    u.searchParams.set("tag", tag);
    u.searchParams.set("step", String(step));
    if (runs[run].version !== undefined && runs[run].version !== null) u.searchParams.set("v", String(runs[run].version));
    return u.toString();
  }

  // {promise, value (once decoded), url (a blob URL the <img> shows)}; one request per input. A
  // row that shows entry.url holds the entry (holdInput) until it is disposed (releaseInput).
  function inputFor(run, index) {
    const key = `${run}\n${index}`;
    let entry = inputs.get(key);
    if (!entry) {
      entry = { value: null, url: null, users: 0, dropped: false };
      entry.promise = (async () => {
        const blob = await fetchBlob(imageURL(run, inputTag(index), runs[run].steps[0] ?? 0));
        entry.value = await decodeInput(blob);
        entry.url = URL.createObjectURL(blob);
        if (inputs.get(key) === entry) inputs.set(key, entry, entry.value.pixels.byteLength);
        else revoke(entry);  // dropped while loading: kept while a row holds it
        return entry;
      })();
      entry.promise.catch(() => { if (inputs.get(key) === entry) inputs.delete(key); });
      inputs.set(key, entry, 0);
    }
    return entry;
  }

  const mapKey = (run, method, index, step) => `${run}\n${method}\n${index}\n${step}`;
  // The decoded map, or null when that map was not logged; `signal` aborts the request (a grid
  // cell that moved on).
  async function mapFor(run, method, index, step, signal) {
    const key = mapKey(run, method, index, step);
    if (maps.has(key)) return maps.get(key);
    if (!runs[run].methodSteps[method] || !runs[run].methodSteps[method].has(step)) return null;
    try {
      const map = await decodeMap(await fetchBlob(imageURL(run, mapTag(method, index), step), signal));
      maps.set(key, map, map.values.byteLength);
      return map;
    } catch (error) {
      if (!(error instanceof Missing)) throw error;
      maps.set(key, null, 0);
      return null;
    }
  }

  const holdInput = (entry) => { entry.users += 1; };
  const releaseInput = (entry) => { entry.users -= 1; revoke(entry); };

  // One answer per run and step, {promise, value (once answered; {} when it failed)}; no request
  // where there is nothing to ask (no step, or a run that logged no quality).
  function perStep(cache, route, run, step, asked = true, params = {}, suffix = "") {
    const key = `${run}\n${step}${suffix}`;
    let entry = cache.get(key);
    if (!entry) {
      if (!isNumber(step) || !asked) {
        entry = { value: {} };
        entry.promise = Promise.resolve(entry.value);
      } else {
        entry = { value: null };
        entry.promise = getJSON(route, { run, step, ...params })
          .catch((error) => {
            console.error(error);
            if (cache.get(key) === entry) cache.delete(key);  // a failure is not an answer: asked again next time
            return {};
          })
          .then((answer) => (entry.value = answer));
      }
      cache.set(key, entry);
    }
    return entry;
  }
  // run's /predictions at step, every image: str(index) -> {predicted, predicted_probability,
  // explained, explained_probability}. Asked for only where a sort or filter needs them all.
  const predictionsFor = (run, step) => perStep(predictions, "./predictions", run, step);
  // The answer that holds image `index` at step: the whole run's when it was asked for, else the
  // index's block (what a caption needs).
  function predictionsAt(run, step, index) {
    const whole = predictions.get(`${run}\n${step}`);
    if (whole) return whole;
    const block = Math.floor(index / PREDICTION_BLOCK);
    const images = `${block * PREDICTION_BLOCK}-${(block + 1) * PREDICTION_BLOCK - 1}`;
    return perStep(blocks, "./predictions", run, step, true, { images }, `\n${block}`);
  }
  // The whole run's answer at step if it was asked for and came (no request), else null.
  const predictionsKnown = (run, step) => {
    const whole = predictions.get(`${run}\n${step}`);
    return whole ? whole.value : null;
  };
  // run's /quality at step: method -> {measure: [value or null per image index]}
  const qualityFor = (run, step) => perStep(quality, "./quality", run, step, Object.keys(runs[run].quality || {}).length > 0);

  // True labels: /runs' image_labels; logs without them (older servers) that logged labels
  // explained the true class, so the explained class stands in for it.
  function trueLabel(run, index, answer) {
    const info = runs[run];
    if (info.image_labels) {
      const v = info.image_labels[String(index)];
      return isNumber(v) ? v : null;
    }
    if (info.labeled && answer && answer[String(index)]) return answer[String(index)].explained;
    return null;
  }

  // A run written again (a new `version` in /runs): what was cached of it is another run's.
  function forget(run) {
    for (const cache of [inputs, maps, predictions, blocks, quality]) {
      for (const key of [...cache.map.keys()]) if (key.startsWith(`${run}\n`)) cache.delete(key);
    }
  }

  return { forget, inputs, maps, imageURL, inputFor, holdInput, releaseInput, mapKey, mapFor, predictionsFor, predictionsAt,
    predictionsKnown, qualityFor, trueLabel };
}
